"""Checking `model.*` and `dataset.*` options before any data is read or a run row exists.

The model and dataset code validate their own arguments, but only when a job builds
them: in a grid that is after the earlier jobs have trained, and a bad value in the
last job would stop the sweep half way. Here every option is checked against the
signature it ends up in (names, types, ranges), and the model is built once on the
`meta` device (no memory, no compute) for the input shape the data set will have, so
shape-dependent mistakes (a ViT patch that does not divide the image) surface too.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from sweeper.config.schema import Rule, check_value
from sweeper.datasets import dataset_options, load_dataset
from sweeper.datasets.names import CLASS_COUNTS
from sweeper.errors import ConfigError, invalid_value
from sweeper.models import build_model
from sweeper.models.build import model_options

# (channels, height, width) and classes of the data sets whose files are read from disk;
# synthetic's come from its options.
_FIXED_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), CLASS_COUNTS["digits"]),
    "mnist": ((1, 28, 28), CLASS_COUNTS["mnist"]),
    "fashion_mnist": ((1, 28, 28), CLASS_COUNTS["fashion_mnist"]),
    "cifar10": ((3, 32, 32), CLASS_COUNTS["cifar10"]),
}

# Lower bounds of options whose default alone does not say (inclusive unless noted).
_INT_MINIMUM: dict[str, int] = {"max_samples": 1, "n_samples": 2, "image_size": 1,
                                "channels": 1, "num_classes": 2}


def _loader_options() -> dict[str, Any]:
    """load_dataset's own keyword options (every data set takes them) with defaults."""
    params = inspect.signature(load_dataset).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "seed"
    }


def _unknown(group: str, name: str, given: dict[str, Any], allowed: dict[str, Any]) -> None:
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise ConfigError(
            f"unknown option(s) {', '.join(f'{group}.{k}' for k in extra)} for {group} "
            f"{name!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )


def _rule_like_default(default: Any, minimum: int | None = None) -> Rule:
    """The schema's Rule of an option, read from its signature default."""
    if isinstance(default, bool):
        return Rule(bool)
    if isinstance(default, int) or minimum is not None:
        return Rule(int, nullable=default is None, ge=0 if minimum is None else minimum)
    if isinstance(default, float):
        return Rule(float, ge=0)
    if isinstance(default, tuple):
        return Rule(Any, check="sizes")
    if default is None:
        return Rule(int, nullable=True)
    return Rule(Any, nullable=True)  # text and the like: the builder checks them


def _check_like_default(key: str, value: Any, default: Any, minimum: int | None = None) -> None:
    """Type (and simple range) check of one option against its signature default, by the
    schema's validator."""
    check_value(key, value, _rule_like_default(default, minimum))


_FRACTION = Rule(float, ge=0, lt=1)
_PATH = Rule(Any, check="path")


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Every `dataset.*` option of data set `name` (its `name` key already removed)."""
    allowed = {**_loader_options(), **dataset_options(name)}
    _unknown("dataset", name, options, allowed)
    for key, value in options.items():
        full = f"dataset.{key}"
        if key in ("val_fraction", "test_fraction"):
            check_value(full, value, _FRACTION)
        elif key == "root":
            check_value(full, value, _PATH)
        else:
            _check_like_default(full, value, allowed[key], _INT_MINIMUM.get(key))
    if name == "synthetic":
        n = options.get("n_samples", allowed["n_samples"])
        k = options.get("num_classes", allowed["num_classes"])
        if k > n:
            raise invalid_value(
                "dataset.num_classes", k, f"an integer from 2 to dataset.n_samples ({n})"
            )


def data_shape(name: str, options: dict[str, Any]) -> tuple[tuple[int, int, int], int] | None:
    """Input shape and class count a data set will have, without reading it."""
    if name == "synthetic":
        defaults = dataset_options(name)
        size = options.get("image_size", defaults["image_size"])
        channels = options.get("channels", defaults["channels"])
        return (channels, size, size), options.get("num_classes", defaults["num_classes"])
    return _FIXED_SHAPES.get(name)


def check_model_options(
    name: str, options: dict[str, Any], dataset: str, data_options: dict[str, Any]
) -> None:
    """Every `model.*` option of `name`, then a build on the meta device for the data set."""
    allowed = model_options(name)
    _unknown("model", name, options, allowed)
    for key, value in options.items():
        _check_like_default(f"model.{key}", value, allowed[key])
    shape = data_shape(dataset, data_options)
    if shape is None:
        return
    input_shape, classes = shape
    try:
        with torch.device("meta"):
            build_model(name, input_shape, classes, **options)
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "defaults"
        raise ConfigError(
            f"invalid 'model' options for {name!r} ({given}) on {dataset} "
            f"{'x'.join(map(str, input_shape))}: {exc}"
        ) from None
