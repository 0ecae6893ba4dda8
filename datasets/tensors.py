"""An in-memory image dataset: all sources end up as one of these per split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ImageTensorDataset(Dataset[tuple[Tensor, int]]):
    """Images (N, C, H, W) and integer labels (N,) held as tensors.

    ``uint8`` images are kept as bytes and scaled to float [0, 1] per item, which
    gives exactly what ``torchvision.transforms.ToTensor`` would, without a PIL
    round trip per sample and at a quarter of the memory of storing floats.
    ``transform`` (augmentation, normalisation) then applies to each float image.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if images.ndim != 4 or targets.ndim != 1 or len(images) != len(targets):
            raise ValueError(
                f"need images (N, C, H, W) and targets (N,), got {tuple(images.shape)} "
                f"and {tuple(targets.shape)}"
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
        self.images = images
        self.targets = targets.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: Tensor) -> ImageTensorDataset:
        """A new dataset holding copies of the selected rows (same transform)."""
        return ImageTensorDataset(self.images[indices], self.targets[indices], self.transform)

    def with_transform(self, transform: Callable[[Tensor], Tensor] | None) -> ImageTensorDataset:
        """The same rows (shared, not copied) read through ``transform``."""
        return ImageTensorDataset(self.images, self.targets, transform)
