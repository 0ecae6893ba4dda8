"""MNIST, Fashion-MNIST and CIFAR-10 read by torchvision from a local root.

Nothing is fetched unless ``download=True``; missing files become a
``DatasetUnavailable`` that says where we looked and how to get them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets as tv

from sweeper.errors import DatasetUnavailable

from .source import SourceData
from .tensors import ImageTensorDataset


@dataclass(frozen=True)
class VisionSpec:
    """Where torchvision expects one dataset's files under ``root``."""

    title: str
    cls: type[tv.VisionDataset]
    folder: str  # relative to root
    files: tuple[str, ...]
    how: str  # how to obtain the files by hand
    sizes: tuple[int, int] = (0, 0)  # images in the official (train, test) splits


def _mnist_like(cls: type[tv.MNIST], title: str) -> VisionSpec:
    # torchvision reads the uncompressed IDX files (no checksum) from <root>/<Class>/raw.
    files = tuple(Path(url).name.removesuffix(".gz") for url, _ in cls.resources)
    return VisionSpec(
        title,
        cls,
        f"{cls.__name__}/raw",
        files,
        "the four standard IDX files, gunzipped (" + ", ".join(files) + ")",
        (60_000, 10_000),
    )


def _cifar10() -> VisionSpec:
    # torchvision md5-checks every batch file, so only the genuine files are accepted.
    cls = tv.CIFAR10
    files = tuple(f for f, _ in cls.train_list + cls.test_list) + (cls.meta["filename"],)
    return VisionSpec(
        "CIFAR-10",
        cls,
        cls.base_folder,
        files,
        f"the files extracted from {cls.filename} (" + ", ".join(files) + ")",
        (50_000, 10_000),
    )


VISION_SPECS: dict[str, VisionSpec] = {
    "mnist": _mnist_like(tv.MNIST, "MNIST"),
    "fashion_mnist": _mnist_like(tv.FashionMNIST, "Fashion-MNIST"),
    "cifar10": _cifar10(),
}


def read_vision(name: str, root: Path, download: bool) -> SourceData:
    """Official train and test splits of ``name`` as uint8 tensors (ToTensor-equivalent)."""
    spec = VISION_SPECS[name]
    try:
        train = spec.cls(str(root), train=True, download=download)
        test = spec.cls(str(root), train=False, download=False)
    except (RuntimeError, OSError) as err:  # torchvision's "not found" / network errors
        raise DatasetUnavailable(_explain(spec, root, download, err)) from err
    classes = len(train.classes)
    return SourceData(
        train=_as_tensors(train),
        test=_as_tensors(test),
        num_classes=classes,
        description=f"torchvision {spec.cls.__name__} from {(root / spec.folder).absolute()}",
    )


def _as_tensors(ds: tv.VisionDataset) -> ImageTensorDataset:
    """Both MNIST-style (N, H, W) tensors and CIFAR's (N, H, W, C) arrays -> (N, C, H, W)."""
    data = torch.as_tensor(ds.data)
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    return ImageTensorDataset(images.contiguous(), torch.as_tensor(ds.targets))


def _explain(spec: VisionSpec, root: Path, download: bool, err: Exception) -> str:
    folder = (root / spec.folder).absolute()
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if download:
        problem = f"downloading {spec.title} into {folder} failed (no internet access?): {err}"
    elif missing:
        problem = f"{spec.title} not found: looked in {folder}, missing {', '.join(missing)}"
    else:
        problem = f"{spec.title} files in {folder} were rejected by torchvision: {err}"
    return (
        f"{problem}.\nTo get it, either\n"
        f"  - rerun with dataset.download=true on a machine with internet access, or\n"
        f"  - place {spec.how} under {folder}, or\n"
        f"  - point dataset.root=... (or SWEEPER_DATA_ROOT) at a directory that already "
        f"holds {spec.folder}/."
    )
