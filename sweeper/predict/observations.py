"""Runs read from a store (or any run-like rows) as the estimator's observations."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select

from sweeper.predict.types import TARGETS, TIME_TARGETS, Observation
from sweeper.store import Run, Store, Sweep

# A run -> its model's activations per sample (built by the caller, who has torch), or None.
ActivationSizer = Callable[[Any], "float | None"]
# A run -> its network's layer totals (sweeper.predict.layerwise.FEATURES order), or None.
LayerSizer = Callable[[Any], "tuple[float, ...] | None"]
# (run, target) -> the network's predicted seconds per sample from its machine's layer-time
# law (sweeper.predict.layer_time), or None without a catalog.
LayerTimer = Callable[[Any, str], "float | None"]


def hardware_label(run: Any) -> str:
    parts = [getattr(run, "host", None), getattr(run, "cpu_model", None)]
    gpu = getattr(run, "gpu_model", None)
    if gpu:
        parts.append(f"{getattr(run, 'gpu_count', 1) or 1}x {gpu}")
    parts.append(f"device {getattr(run, 'device', '?')}")
    return " / ".join(str(p) for p in parts if p)


def target_value(run: Any, target: str) -> float | None:
    """The run's value per sample for `target` (J for energy targets, s for time ones)."""
    if target in TARGETS:
        return getattr(run, TARGETS[target], None)
    if target not in TIME_TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of: "
                         f"{', '.join([*TARGETS, *TIME_TARGETS])}")
    duration_column, samples_column = TIME_TARGETS[target]
    duration, samples = getattr(run, duration_column, None), getattr(run, samples_column, None)
    if duration is None or not samples or not duration > 0:
        return None
    return float(duration) / float(samples)


INFERENCE_TARGETS = frozenset({"inference", "inference_time"})


def target_batch(run: Any, target: str) -> int:
    """The batch size the target's samples ran at: the run's `inference.batch` for the
    inference targets (it may differ from the training batch), its `batch` otherwise."""
    if target in INFERENCE_TARGETS:
        inference = (getattr(run, "config", None) or {}).get("inference") or {}
        batch = inference.get("batch")
        if isinstance(batch, int) and batch > 0:
            return batch
    return int(run.batch)


def power_capped(run: Any) -> bool:
    """The run ran under a GPU power limit sweeper set below the card's default (its
    joules and time are not those of the card as fitted, so fits leave it out)."""
    gpu = (getattr(run, "config", None) or {}).get("gpu") or {}
    fraction, watts = gpu.get("power_limit"), gpu.get("power_limit_w")
    return watts is not None or (fraction is not None and fraction != 1.0)


def observations_from_runs(
    runs: Iterable[Any], target: str = "train", activations: ActivationSizer | None = None,
    layers: LayerSizer | None = None, layer_time: LayerTimer | None = None,
) -> list[Observation]:
    """Completed runs with a positive value per sample, MACs and parameter count, and no
    power limit set by sweeper."""
    out = []
    for r in runs:
        value = target_value(r, target)
        if (
            getattr(r, "status", None) != "completed" or power_capped(r)
            or value is None or not value > 0
            or not (r.params or 0) > 0 or not (r.macs_per_sample or 0) > 0
            or not r.hardware_id
        ):
            continue
        out.append(Observation(
            run_id=int(r.id), hardware_id=str(r.hardware_id),
            meter_source=str(r.meter_source or "unknown"), model=str(r.model),
            dataset=str(r.dataset), batch=target_batch(r, target), precision=str(r.precision),
            params=int(r.params), macs_per_sample=float(r.macs_per_sample),
            per_sample=float(value), hardware_label=hardware_label(r),
            activations_per_sample=None if activations is None else activations(r),
            layers=None if layers is None else layers(r),
            layer_s=None if layer_time is None else layer_time(r, target),
        ))
    return out


def load_runs(store: Store, sweep: str | None = None) -> list[Run]:
    """Every completed run in the store (or in one sweep, by name), in id order."""
    query = select(Run).where(Run.status == "completed").order_by(Run.id)
    if sweep is not None:
        query = query.join(Sweep, Run.sweep_id == Sweep.id).where(Sweep.name == sweep)
    with store.session() as session:
        return list(session.scalars(query))


def load_observations(
    store: Store,
    target: str = "train",
    sweep: str | None = None,
    activations: ActivationSizer | None = None,
    layers: LayerSizer | None = None,
    layer_time: LayerTimer | None = None,
) -> list[Observation]:
    """Observations of every completed run in the store (or in one sweep, by name)."""
    return observations_from_runs(load_runs(store, sweep), target, activations, layers,
                                  layer_time)
