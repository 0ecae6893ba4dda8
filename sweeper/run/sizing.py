"""A configuration's sizes without training it: its model's parameters, MACs and activations
per sample from a build on the `meta` device (no memory, no compute), its data set's split
sizes, and the hardware it would run on. Cached in the process, so a grid sizes each model
and data set once. Used by `mode=estimate` and the frontier search's energy prediction.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sweeper.config.spec import RunSpec
from sweeper.errors import ConfigError

log = logging.getLogger(__name__)


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
    # Each layer's work per sample, for the layer-time law (sweeper.predict.layer_time).
    layer_works: tuple[Any, ...] | None = None


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
    """(params, MACs, activations, layer totals, layer works) per sample, from one build on
    the meta device (the layer totals as sweeper.predict.layerwise.FEATURES, each layer's
    work as sweeper.predict.layer_time.LayerWork)."""
    import torch

    from sweeper.models import build_model, describe_layers, describe_model
    from sweeper.predict.layer_time import layer_work
    from sweeper.predict.layerwise import feature_tuple

    with torch.device("meta"):
        net = build_model(model, input_shape, classes, **json.loads(options_json))
    info = describe_model(net, input_shape)
    described = describe_layers(net, input_shape)
    works = tuple(layer_work(layer) for layer in described)
    return (info.params, info.macs_per_sample, info.activations_per_sample,
            feature_tuple(described), works)


def size_config(spec: RunSpec, base_dir: str) -> SizedConfig:
    """The configuration's model sizes and its data set's sizes; nothing trains."""
    from sweeper.run.machine import machine_id

    try:
        shape, classes, train, val, test = _data_sizes(
            spec.dataset, _key(spec.dataset_options), spec.seed, base_dir)
        params, macs, acts, layers, works = _model_size(
            spec.model, _key(spec.model_options), shape, classes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option for {spec.model!r}/{spec.dataset!r}: {exc}") from exc
    return SizedConfig(
        params=params, macs_per_sample=macs, train_samples=train,
        hardware_id=machine_id(spec), activations_per_sample=acts or None,
        eval_samples_per_epoch=val, test_samples=test, layer_features=layers,
        layer_works=works,
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


class LayerTimer:
    """A store's layer-time laws (sweeper.predict.layer_time), one per machine, precision
    and phase, fitted on that machine's mode=layers catalog when first asked; None where
    the machine has no catalog. Called as (run, target) by the estimator's observations,
    and with ``predict`` for a configuration never run."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._laws: dict[tuple[str, str, str], Any] = {}

    def law(self, hardware_id: str, precision: str, phase: str) -> Any:
        key = (hardware_id, precision, phase)
        if key not in self._laws:
            from sweeper.predict.layer_time import fit_layer_time
            from sweeper.store.layer_costs import load_layer_costs

            rows = load_layer_costs(self._store, hardware_id, precision)
            if not rows and precision != "fp32":
                rows = load_layer_costs(self._store, hardware_id, "fp32")
                if rows:  # a precision's cost per layer kind can differ many-fold (bf16 on
                    # a CPU without bf16 units), which one factor per precision cannot hold
                    log.warning("no %s layer catalog for machine %s: its layer times are "
                                "fp32's (time it with mode=layers precision=%s)",
                                precision, hardware_id, precision)
            self._laws[key] = fit_layer_time(rows, phase) if rows else None
        return self._laws[key]

    def predict(self, hardware_id: str, precision: str, target: str,
                works: tuple[Any, ...] | None, batch: int) -> float | None:
        from sweeper.predict.observations import INFERENCE_TARGETS

        if not works:
            return None
        law = self.law(hardware_id, precision,
                       "inference" if target in INFERENCE_TARGETS else "train")
        return None if law is None else law.per_sample_s(works, batch) or None

    def __call__(self, run: Any, target: str) -> float | None:
        described = _run_model(run)
        if described is None or not getattr(run, "hardware_id", None):
            return None
        try:
            works = _model_size(*described)[4]
        except (TypeError, ValueError, RuntimeError):  # a model this version no longer builds
            return None
        from sweeper.predict.observations import target_batch

        return self.predict(str(run.hardware_id), str(run.precision), target, works,
                            target_batch(run, target))


_TIMERS: dict[str, LayerTimer] = {}


def layer_timer(store: Any) -> LayerTimer:
    """One LayerTimer per store for the process (a grid fits each catalog once)."""
    key = str(getattr(store, "display_url", id(store)))
    if key not in _TIMERS:
        _TIMERS[key] = LayerTimer(store)
    return _TIMERS[key]
