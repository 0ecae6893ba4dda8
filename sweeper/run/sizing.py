"""A configuration's sizes without training it: its model's parameters, MACs and activations
per sample from a build on the `meta` device (no memory, no compute), its data set's split
sizes, and the hardware it would run on. Cached in the process, so a grid sizes each model
and data set once. Used by `mode=estimate` and the frontier search's energy prediction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sweeper.config.spec import RunSpec
from sweeper.errors import ConfigError


@dataclass(frozen=True)
class SizedConfig:
    """What the estimate needs to know about the configuration, from building its model."""

    params: int
    macs_per_sample: float
    train_samples: int  # one epoch
    hardware_id: str
    activations_per_sample: float | None = None
    eval_samples_per_epoch: int = 0  # the validation pass after every epoch
    test_samples: int = 0  # the test set (the test pass at the end)
    # The network's layer totals per sample (sweeper.predict.layerwise.FEATURES order).
    layer_features: tuple[float, ...] | None = None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@cache
def _data_sizes(dataset: str, options_json: str, seed: int, base_dir: str) -> tuple:
    """(input shape, classes, train, val, test sizes) of a data set (loaded once)."""
    from sweeper.config.options import data_shape
    from sweeper.datasets import load_dataset, planned_sizes

    options = json.loads(options_json)
    root = Path(str(options.pop("root", "data"))).expanduser()
    planned = planned_sizes(dataset, **options)
    shape = data_shape(dataset, options)
    if planned is not None and shape is not None:  # known from the config: no files needed
        return (tuple(shape[0]), shape[1], *planned)
    if not root.is_absolute():
        root = Path(base_dir) / root
    data = load_dataset(dataset, root=root, seed=seed, **options)
    return (tuple(data.input_shape), data.num_classes, len(data.train),  # type: ignore[arg-type]
            len(data.val), len(data.test))  # type: ignore[arg-type]


@cache
def _model_size(model: str, options_json: str, input_shape: tuple, classes: int) -> tuple:
    """(params, MACs, activations, layer totals) per sample, from one build on the meta
    device (the layer totals as sweeper.predict.layerwise.FEATURES)."""
    import torch

    from sweeper.models import build_model, describe_layers, describe_model
    from sweeper.predict.layerwise import feature_tuple

    with torch.device("meta"):
        net = build_model(model, input_shape, classes, **json.loads(options_json))
    info = describe_model(net, input_shape)
    layers = feature_tuple(describe_layers(net, input_shape))
    return info.params, info.macs_per_sample, info.activations_per_sample, layers


@cache
def _hardware_id(device: str) -> str:
    from sweeper.energy.hardware import describe_host
    from sweeper.training.device import describe_accelerator, resolve_device

    return describe_host(describe_accelerator(resolve_device(device))).hardware_id


def size_config(spec: RunSpec, base_dir: str) -> SizedConfig:
    """The configuration's model sizes and its data set's sizes; nothing trains."""
    try:
        shape, classes, train, val, test = _data_sizes(
            spec.dataset, _key(spec.dataset_options), spec.seed, base_dir)
        params, macs, acts, layers = _model_size(
            spec.model, _key(spec.model_options), shape, classes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option for {spec.model!r}/{spec.dataset!r}: {exc}") from exc
    return SizedConfig(
        params=params, macs_per_sample=macs, train_samples=train,
        hardware_id=_hardware_id(spec.device), activations_per_sample=acts or None,
        eval_samples_per_epoch=val, test_samples=test, layer_features=layers,
    )


def _run_model(run: Any) -> tuple[str, str, tuple, int] | None:
    """(model, options, input shape, classes) of a stored run, from its config."""
    from sweeper.config.options import data_shape

    config = getattr(run, "config", None) or {}
    model_cfg, data_cfg = dict(config.get("model") or {}), dict(config.get("dataset") or {})
    name, dataset = model_cfg.pop("name", None), data_cfg.pop("name", None)
    shape = data_shape(str(dataset), data_cfg) if name and dataset else None
    if shape is None:
        return None
    return str(name), _key(model_cfg), tuple(shape[0]), shape[1]


def run_layers(run: Any) -> tuple[float, ...] | None:
    """A stored run's layer totals, rebuilt from its config on the meta device."""
    described = _run_model(run)
    if described is None:
        return None
    try:
        return _model_size(*described)[3]
    except (TypeError, ValueError, RuntimeError):  # a model this version no longer builds
        return None


def run_activations(run: Any) -> float | None:
    """A stored run's activations per sample, rebuilt from its config on the meta device
    (the store keeps MACs and parameters, not activations)."""
    described = _run_model(run)
    if described is None:
        return None
    try:
        return _model_size(*described)[2] or None
    except (TypeError, ValueError, RuntimeError):  # a model this version no longer builds
        return None
