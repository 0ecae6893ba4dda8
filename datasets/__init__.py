"""Image-classification datasets split deterministically for energy sweeps.

``load_dataset(name, ...)`` returns a :class:`DataSplits`; its options mirror
``conf/dataset/<name>.yaml``. Only the torchvision datasets touch the disk, and
they download nothing unless asked to.
"""

from sweeper.errors import DatasetUnavailable

from .load import DATASET_NAMES, dataset_options, load_dataset
from .tensors import ImageTensorDataset
from .types import DataSplits

__all__ = [
    "DATASET_NAMES",
    "DataSplits",
    "DatasetUnavailable",
    "ImageTensorDataset",
    "dataset_options",
    "load_dataset",
]
