"""A tiny CIFAR-10 in torchvision's on-disk format, so the real loading code is tested.

The files are the genuine layout (pickled dicts of uint8 rows, batches.meta); what a
test cannot produce is the official MD5 of each file, which torchvision checks. So
``accept_unofficial_cifar10`` makes torchvision's CIFAR reader accept any file that
exists: the one stand-in, for the checksum; everything else runs as in production.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets as tv

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def write_tiny_cifar10(root: Path, per_batch: int = 10, n_test: int = 20, seed: int = 0) -> Path:
    """Write cifar-10-batches-py/ under ``root`` (5 train batches of ``per_batch`` images,
    one test batch) with random pixels and labels cycling through the 10 classes."""
    rng = np.random.default_rng(seed)
    folder = root / tv.CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    files = [(name, per_batch) for name, _ in tv.CIFAR10.train_list]
    files += [(name, n_test) for name, _ in tv.CIFAR10.test_list]
    for name, n in files:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),  # CHW rows
            "labels": [int(i) % 10 for i in range(n)],
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": LABEL_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / tv.CIFAR10.meta["filename"]).write_bytes(pickle.dumps(meta))
    return folder


def accept_unofficial_cifar10(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchvision's CIFAR reader skip its MD5 check (files must still exist)."""
    monkeypatch.setattr(
        tv.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )
