"""scikit-learn's bundled handwritten digits: real data that needs no download."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from .source import SourceData
from .tensors import ImageTensorDataset

_MAX_PIXEL = 16.0  # the UCI digits are 4-bit counts, 0..16


def read_digits() -> SourceData:
    """All 1797 8x8 images as float (N, 1, 8, 8) in [0, 1], with labels 0..9."""
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).div_(_MAX_PIXEL).unsqueeze(1)
    targets = torch.as_tensor(bunch.target, dtype=torch.long)
    return SourceData(
        train=ImageTensorDataset(images, targets),
        test=None,
        num_classes=10,
        description=f"sklearn.datasets.load_digits (bundled UCI digits, {len(targets)} images)",
    )
