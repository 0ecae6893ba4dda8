"""Image-classification datasets split deterministically for energy sweeps.

``load_dataset(name, ...)`` returns a :class:`DataSplits`; its options mirror
``conf/dataset/<name>.yaml``. Only the torchvision datasets touch the disk, and
they download nothing unless asked to.
"""

from datasets.load import DATASET_NAMES, dataset_options, load_dataset
from datasets.tensors import ImageTensorDataset
from datasets.types import DatasetUnavailable, DataSplits

__all__ = [
    "DATASET_NAMES",
    "DataSplits",
    "DatasetUnavailable",
    "ImageTensorDataset",
    "dataset_options",
    "load_dataset",
]
