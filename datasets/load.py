"""``load_dataset``: pick a source, then carve deterministic stratified splits."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from .augment import TRANSFORM_OPTIONS, check_transform_options, split_transforms
from .digits import read_digits
from .names import DATASET_NAMES
from .source import SourceData
from .stratify import split_off, take
from .synthetic import make_synthetic
from .types import DataSplits


def dataset_options(name: str) -> dict[str, Any]:
    """Dataset-specific keyword options of ``name`` with their defaults."""
    _check_name(name)
    if name != "synthetic":
        return dict(TRANSFORM_OPTIONS.get(name, {}))
    params = inspect.signature(make_synthetic).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load_dataset(
    name: str,
    *,
    root: str | Path = "data",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = False,
    max_samples: int | None = None,
    **options: Any,
) -> DataSplits:
    """Load ``name`` and split it into train/val/test, stratified and fixed by ``seed``.

    ``test_fraction`` of the pool becomes the test split only where the source has
    none (digits, synthetic); ``val_fraction`` of what remains for training becomes
    val. ``max_samples`` then subsamples train only, so val and test stay comparable
    across quick and full runs. ``root`` and ``download`` matter only for the
    torchvision datasets; relative roots are taken relative to the current directory.
    CIFAR-10's ``augment`` and ``normalize`` options (see datasets/augment.py) give the
    training split the study's random crop and flip, and every split its normalisation.
    """
    allowed = dataset_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    for label, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {fraction}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples}")

    transform_options = {k: options.pop(k) for k in TRANSFORM_OPTIONS.get(name, {}) if k in options}
    check_transform_options(transform_options)
    data = _read(name, Path(root), download, seed, options)
    rng = np.random.default_rng(seed)
    pool, test = data.train, data.test
    if test is None:
        keep, held = split_off(pool.targets, test_fraction, rng)
        pool, test = pool.subset(keep), pool.subset(held)
    keep, held = split_off(pool.targets, val_fraction, rng)  # as planned_sizes counts
    train, val = pool.subset(keep), pool.subset(held)
    if max_samples is not None:
        train = train.subset(take(train.targets, max_samples, rng))
    if len(train) == 0:
        raise ValueError(f"no training samples left for {name!r}; lower the split fractions")
    _, height, width = train.input_shape
    transforms = split_transforms(name, (height, width), **transform_options)
    return DataSplits(
        name=name,
        train=train.with_transform(transforms.train),
        val=val.with_transform(transforms.evaluation),
        test=test.with_transform(transforms.evaluation),
        input_shape=train.input_shape,
        num_classes=data.num_classes,
        source="; ".join(filter(None, (data.description, transforms.description))),
    )


def planned_sizes(
    name: str, *, val_fraction: float = 0.1, max_samples: int | None = None, **_: Any
) -> tuple[int, int, int] | None:
    """(train, val, test) sizes ``load_dataset`` gives a torchvision data set, from its
    official split sizes, without its files (None for the others, which need no files):
    the same arithmetic as the split below."""
    if name not in ("mnist", "fashion_mnist", "cifar10"):
        return None
    from .vision import VISION_SPECS

    pool, test = VISION_SPECS[name].sizes
    val = round(val_fraction * pool)
    train = pool - val if max_samples is None else min(pool - val, max_samples)
    return train, val, test


def _read(name: str, root: Path, download: bool, seed: int, options: dict[str, Any]) -> SourceData:
    if name == "digits":
        return read_digits()
    if name == "synthetic":
        return make_synthetic(seed, **options)
    from .vision import read_vision  # torchvision: imported only for its data sets

    return read_vision(name, root, download)


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
