"""The study's CIFAR-10 input pipeline: random crop and flip on training images only,
and the same channel normalisation on every split (github.com/ioannismavromatis/
sustainable-ai main.py, after kuangliu/pytorch-cifar)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

Transform = Callable[[Tensor], Tensor]

# The constants the study's code normalises with (kuangliu's; the second triple is not
# the per-pixel std of CIFAR-10, 0.247/0.243/0.261, but it is what the study used).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CROP_PADDING = 4

# Data sets whose splits get transforms, and their options with defaults.
TRANSFORM_OPTIONS: dict[str, dict[str, Any]] = {
    "cifar10": {"augment": True, "normalize": True},
}


@dataclass(frozen=True)
class SplitTransforms:
    """Per-sample transforms of float [0, 1] images: ``train`` for the training split,
    ``evaluation`` for val and test (never random); None leaves images as they are."""

    train: Transform | None
    evaluation: Transform | None
    description: str  # for DataSplits.source; empty when nothing is applied


def split_transforms(
    name: str, image_size: tuple[int, int], *, augment: bool = True, normalize: bool = True
) -> SplitTransforms:
    """``augment``: RandomCrop(padding 4) + RandomHorizontalFlip on train; ``normalize``:
    (x - mean) / std per channel on every split, as the study's pipeline."""
    if name not in TRANSFORM_OPTIONS:
        return SplitTransforms(None, None, "")
    check_transform_options({"augment": augment, "normalize": normalize})
    from torchvision.transforms import v2  # torchvision costs seconds to import: only here

    train: list[Transform] = []
    evaluation: list[Transform] = []
    parts = []
    if augment:
        train += [v2.RandomCrop(image_size, padding=CROP_PADDING), v2.RandomHorizontalFlip()]
        parts.append(f"train augmented (random crop, padding {CROP_PADDING}; horizontal flip)")
    if normalize:
        norm = v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)
        train.append(norm)
        evaluation.append(norm)
        parts.append("all splits normalised with the CIFAR-10 channel mean/std")
    return SplitTransforms(
        v2.Compose(train) if train else None,
        v2.Compose(evaluation) if evaluation else None,
        "; ".join(parts),
    )


def check_transform_options(options: dict[str, Any]) -> None:
    """Refuse a non-boolean switch before any file is read."""
    for key, value in options.items():
        if not isinstance(value, bool):
            raise ValueError(f"dataset.{key} must be true or false, got {value!r}")
