"""Behaviour of datasets/: deterministic splits, offline sources, and honest failures."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from torchvision import datasets as tv
from torchvision.transforms import ToTensor

from sweeper.config.options import check_dataset_options
from sweeper.datasets import (
    DATASET_NAMES,
    DataSplits,
    ImageTensorDataset,
    dataset_options,
    load_dataset,
)
from sweeper.datasets.augment import CIFAR10_MEAN, CIFAR10_STD
from sweeper.errors import ConfigError, DatasetUnavailable

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"


def rows(ds: ImageTensorDataset) -> Counter[bytes]:
    """Multiset of (image, label) rows, to compare splits with the source."""
    return Counter(
        img.numpy().tobytes() + bytes([int(t)])
        for img, t in zip(ds.images, ds.targets, strict=True)
    )


def test_digits_splits_partition_the_1797_images() -> None:
    splits = load_dataset("digits")
    assert isinstance(splits, DataSplits)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 144, 359)
    everything = load_dataset("digits", val_fraction=0.0, test_fraction=0.0).train
    assert len(everything) == 1797
    assert rows(splits.train) + rows(splits.val) + rows(splits.test) == rows(everything)
    assert splits.input_shape == (1, 8, 8)
    assert splits.num_classes == 10
    assert "load_digits" in splits.source


def test_digits_pixels_are_scaled_to_unit_range() -> None:
    splits = load_dataset("digits")
    image, label = splits.train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert isinstance(label, int)
    images = torch.cat([s.images for s in (splits.train, splits.val, splits.test)])
    assert images.min() == 0.0 and images.max() == 1.0


def test_digits_splits_are_stratified() -> None:
    splits = load_dataset("digits")
    share = torch.bincount(
        load_dataset("digits", test_fraction=0.0, val_fraction=0.0).train.targets
    )
    pool = torch.bincount(torch.cat([splits.train.targets, splits.val.targets]))
    for part, classes in ((splits.test, share), (splits.val, pool)):
        expected = len(part) * classes / classes.sum()
        assert (torch.bincount(part.targets, minlength=10) - expected).abs().max() <= 1


def test_splits_are_deterministic_by_seed() -> None:
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.val.targets, b.val.targets)
    assert not torch.equal(a.test.images, c.test.images)


def test_max_samples_shrinks_only_train() -> None:
    full = load_dataset("digits", seed=3)
    quick = load_dataset("digits", seed=3, max_samples=100)
    assert len(quick.train) == 100
    counts = torch.bincount(quick.train.targets)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(quick.val.images, full.val.images)
    assert torch.equal(quick.test.images, full.test.images)


def test_synthetic_honours_its_options() -> None:
    splits = load_dataset(
        "synthetic", n_samples=300, image_size=12, channels=3, num_classes=4, seed=7
    )
    assert splits.input_shape == (3, 12, 12)
    assert splits.num_classes == 4
    assert len(splits.train) + len(splits.val) + len(splits.test) == 300
    assert set(splits.train.targets.tolist()) == {0, 1, 2, 3}
    assert splits.train.images.min() >= 0.0 and splits.train.images.max() <= 1.0
    again = load_dataset(
        "synthetic", n_samples=300, image_size=12, channels=3, num_classes=4, seed=7
    )
    assert torch.equal(splits.train.images, again.train.images)


def test_synthetic_is_learnable() -> None:
    splits = load_dataset("synthetic", n_samples=600, image_size=8, num_classes=5)
    flat = lambda ds: ds.images.flatten(1).numpy()  # noqa: E731
    clf = LogisticRegression(max_iter=500).fit(flat(splits.train), splits.train.targets.numpy())
    accuracy = clf.score(flat(splits.test), splits.test.targets.numpy())
    assert accuracy > 0.8  # chance is 0.2


def test_unknown_name_lists_allowed_values() -> None:
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    assert "imagenet" in str(err.value)
    assert all(name in str(err.value) for name in DATASET_NAMES)


def test_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match="image_sise"):
        load_dataset("synthetic", image_sise=8)
    with pytest.raises(TypeError, match="channels"):
        load_dataset("digits", channels=3)


@pytest.mark.parametrize(
    "bad", [{"val_fraction": 1.0}, {"test_fraction": -0.1}, {"max_samples": 0}]
)
def test_bad_split_arguments_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        load_dataset("digits", **bad)


def test_missing_mnist_says_where_and_how_and_downloads_nothing(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset("mnist", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message
    assert "dataset.download=true" in message
    assert "dataset.root=" in message
    assert list(tmp_path.iterdir()) == []


def test_missing_cifar10_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize(
    ("name", "cls", "error"),
    [
        ("mnist", tv.MNIST, RuntimeError("Error downloading train-images-idx3-ubyte.gz")),
        ("cifar10", tv.CIFAR10, URLError("[Errno -3] Temporary failure in name resolution")),
    ],
)
def test_failed_download_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, cls: type, error: Exception
) -> None:
    def offline(self: object) -> None:  # stands in for the network; nothing is fetched
        raise error

    monkeypatch.setattr(cls, "download", offline)
    with pytest.raises(DatasetUnavailable, match="downloading") as err:
        load_dataset(name, root=tmp_path, download=True)
    assert "internet" in str(err.value)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the big-endian IDX format MNIST ships in."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str, n_train: int = 60, n_test: int = 20) -> None:
    """The four uncompressed IDX files torchvision 0.29 reads (it checks no md5 on them)."""
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_mnist_style_files_load_end_to_end(tmp_path: Path, name: str, folder: str) -> None:
    fake_mnist(tmp_path, folder)
    splits = load_dataset(name, root=tmp_path, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45, 15, 20)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert str(tmp_path / folder) in splits.source
    # The official test split is kept whole and matches torchvision's ToTensor output.
    reference = getattr(tv, folder)(str(tmp_path), train=False, transform=ToTensor())
    for i in (0, 19):
        image, label = splits.test[i]
        expected, expected_label = reference[i]
        assert torch.equal(image, expected) and label == expected_label
    assert len(load_dataset(name, root=tmp_path, max_samples=10).train) == 10


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_yaml_key_is_accepted(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPER_DATA_ROOT", str(tmp_path))
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"), resolve=True)
    assert cfg.pop("name") == name
    assert cfg["root"] == str(tmp_path) and cfg["download"] is False
    if name in ("digits", "synthetic"):
        assert len(load_dataset(name, **cfg).train) > 0
    else:
        with pytest.raises(DatasetUnavailable):  # not TypeError: every key was accepted
            load_dataset(name, **cfg)


def test_yaml_root_defaults_to_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEPER_DATA_ROOT", raising=False)
    cfg = OmegaConf.load(CONF / "mnist.yaml")
    assert cfg.root == "data"


# ---- CIFAR-10: the real torchvision reader on a tiny copy, and the study's augmentation ----

MEAN = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
STD = torch.tensor(CIFAR10_STD).view(3, 1, 1)


def crops_and_flips(image: torch.Tensor) -> torch.Tensor:
    """All 9 x 9 x 2 outcomes of RandomCrop(32, padding=4) + RandomHorizontalFlip."""
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    crops = [padded[:, y : y + 32, x : x + 32] for y in range(9) for x in range(9)]
    return torch.stack(crops + [c.flip(-1) for c in crops])


def test_tiny_cifar10_loads_through_torchvision(tiny_cifar10: Path) -> None:
    splits = load_dataset(
        "cifar10", root=tiny_cifar10, val_fraction=0.2, augment=False, normalize=False
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    reference = tv.CIFAR10(str(tiny_cifar10), train=False, transform=ToTensor())
    for i in (0, 19):
        image, label = splits.test[i]
        expected, expected_label = reference[i]
        assert torch.equal(image, expected) and label == expected_label


def test_cifar10_augments_the_training_split_only(tiny_cifar10: Path) -> None:
    torch.manual_seed(0)
    splits = load_dataset("cifar10", root=tiny_cifar10, val_fraction=0.2)
    assert "augmented" in splits.source and "normalised" in splits.source
    raw = splits.train.images[3].float() / 255
    outcomes = (crops_and_flips(raw) - MEAN) / STD
    draws = torch.stack([splits.train[3][0] for _ in range(12)])
    # Every draw is one crop/flip of the image, normalised; they are not all the same one.
    matches = [torch.isclose(outcomes, d, atol=1e-6).flatten(1).all(1).any() for d in draws]
    assert all(matches)
    assert len({d.numpy().tobytes() for d in draws}) > 1
    # Evaluation splits: normalised only, the same on every read.
    for split in (splits.val, splits.test):
        image = split.images[0].float() / 255
        assert torch.allclose(split[0][0], (image - MEAN) / STD, atol=1e-6)
        assert torch.equal(split[0][0], split[0][0])


def test_cifar10_augment_false_leaves_training_images_whole(tiny_cifar10: Path) -> None:
    splits = load_dataset("cifar10", root=tiny_cifar10, augment=False)
    image = splits.train.images[0].float() / 255
    assert torch.allclose(splits.train[0][0], (image - MEAN) / STD, atol=1e-6)
    assert "augmented" not in splits.source


def test_cifar10_switches_are_checked_before_reading(tmp_path: Path) -> None:
    assert dataset_options("cifar10") == {"augment": True, "normalize": True}
    with pytest.raises(ValueError, match="dataset.augment must be true or false, got 'yes'"):
        load_dataset("cifar10", root=tmp_path, augment="yes")  # no files: read never started
    with pytest.raises(ConfigError, match="dataset.normalize"):
        check_dataset_options("cifar10", {"normalize": 1})


def test_digits_read_without_sklearn_equal_load_digits() -> None:
    """read_digits reads scikit-learn's bundled file directly (importing scikit-learn costs
    seconds per run); it must give exactly what sklearn.datasets.load_digits gives."""
    from sklearn.datasets import load_digits

    from sweeper.datasets.digits import read_digits

    ours, reference = read_digits(), load_digits()
    expected = torch.as_tensor(reference.images, dtype=torch.float32).div(16.0).unsqueeze(1)
    assert torch.equal(ours.train.images, expected)
    assert torch.equal(ours.train.targets, torch.as_tensor(reference.target))
