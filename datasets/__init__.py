"""Image-classification datasets split deterministically for energy sweeps.

``load_dataset(name, ...)`` returns a :class:`DataSplits`; its options mirror
``conf/dataset/<name>.yaml``. Only the torchvision datasets touch the disk, and
they download nothing unless asked to. The names are importable without torch; the
loaders load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sweeper.errors import DatasetUnavailable

from .names import DATASET_NAMES

if TYPE_CHECKING:
    from .load import dataset_options, load_dataset, planned_sizes
    from .tensors import ImageTensorDataset
    from .types import DataSplits

_LAZY = {
    "dataset_options": ".load", "load_dataset": ".load", "planned_sizes": ".load",
    "ImageTensorDataset": ".tensors", "DataSplits": ".types",
}

__all__ = [
    "DATASET_NAMES",
    "DataSplits",
    "DatasetUnavailable",
    "ImageTensorDataset",
    "dataset_options",
    "load_dataset",
    "planned_sizes",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
