"""Value types that cross the datasets package's boundary."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test splits of one dataset plus what a model needs to be sized for it."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]  # (channels, height, width) of one sample
    num_classes: int
    source: str  # human-readable provenance: where the samples came from
