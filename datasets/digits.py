"""scikit-learn's bundled handwritten digits: real data that needs no download."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .source import SourceData
from .tensors import ImageTensorDataset

_MAX_PIXEL = 16.0  # the UCI digits are 4-bit counts, 0..16


def digits_file() -> Path:
    """scikit-learn's bundled digits.csv.gz (what sklearn.datasets.load_digits reads), found
    without importing scikit-learn, which costs seconds on every run's start."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-learn is not installed (it ships the digits data)")
    return Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")


def read_digits() -> SourceData:
    """All 1797 8x8 images as float (N, 1, 8, 8) in [0, 1], with labels 0..9."""
    with gzip.open(digits_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)  # 64 pixels, then the label
    pixels = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).reshape(-1, 1, 8, 8)
    images = pixels.div_(_MAX_PIXEL)
    targets = torch.from_numpy(table[:, -1].astype(np.int64))
    return SourceData(
        train=ImageTensorDataset(images, targets),
        test=None,
        num_classes=10,
        description=f"sklearn.datasets.load_digits (bundled UCI digits, {len(targets)} images)",
    )
