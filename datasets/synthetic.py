"""Generated images whose class is learnable: any shape, no files, deterministic."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .source import SourceData
from .tensors import ImageTensorDataset

_PROTOTYPE_GRID = 4  # prototypes are random 4x4 patterns, smoothly upsampled


def make_synthetic(
    seed: int,
    *,
    n_samples: int = 2000,
    image_size: int = 16,
    channels: int = 1,
    num_classes: int = 10,
    noise: float = 0.3,
) -> SourceData:
    """Balanced classes, each a smooth random prototype plus Gaussian pixel noise.

    Larger ``noise`` makes classes overlap more; the result is clipped to [0, 1] like
    real images. The same ``seed`` always gives the same samples.
    """
    if n_samples < num_classes or num_classes < 2:
        raise ValueError(
            f"synthetic needs 2 <= num_classes <= n_samples, got {num_classes=}, {n_samples=}"
        )
    if image_size < 1 or channels < 1 or noise < 0:
        raise ValueError(
            f"synthetic needs image_size, channels >= 1 and noise >= 0, got "
            f"{image_size=}, {channels=}, {noise=}"
        )
    rng = np.random.default_rng(seed)
    grid = rng.random((num_classes, channels, _PROTOTYPE_GRID, _PROTOTYPE_GRID))
    prototypes = F.interpolate(
        torch.from_numpy(grid).float(),
        size=(image_size, image_size),
        mode="bilinear",
        align_corners=False,
    )
    targets = torch.from_numpy(rng.permutation(np.arange(n_samples) % num_classes))
    pixel_noise = rng.normal(0.0, noise, (n_samples, channels, image_size, image_size))
    images = (prototypes[targets] + torch.from_numpy(pixel_noise).float()).clamp_(0.0, 1.0)
    return SourceData(
        train=ImageTensorDataset(images, targets),
        test=None,
        num_classes=num_classes,
        description=(
            f"synthetic prototypes + Gaussian noise {noise} ({n_samples} images, "
            f"{channels}x{image_size}x{image_size}, {num_classes} classes, seed {seed})"
        ),
    )
