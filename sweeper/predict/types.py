"""What the energy estimator fits and answers: a completed run reduced to the fit's inputs
(Observation), a configuration to estimate (Query), and the targets it can fit.

The value fitted is per sample: joules for the energy targets, seconds for the time targets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

TARGETS: dict[str, str] = {
    "train": "energy_per_train_sample_j",
    "inference": "energy_per_inference_sample_j",
}
# Time targets: seconds per sample, from a duration column over a sample-count column.
TIME_TARGETS: dict[str, tuple[str, str]] = {
    "train_time": ("train_duration_s", "train_samples"),
    "inference_time": ("inference_duration_s", "inference_samples"),
}
UNITS = {"train": "J", "inference": "J", "train_time": "s", "inference_time": "s"}


class MixedHardwareError(ValueError):
    """Observations from several machines (or meters) were passed to one fit."""


@dataclass(frozen=True)
class Observation:
    """One completed run, reduced to what the fit needs.

    `per_sample` is the target's value per sample: joules for the energy targets,
    seconds for the time targets (TIME_TARGETS)."""

    run_id: int
    hardware_id: str
    meter_source: str
    model: str
    dataset: str
    batch: int
    precision: str
    params: int
    macs_per_sample: float
    per_sample: float
    hardware_label: str = ""
    activations_per_sample: float | None = None
    # The network's layer totals per sample, in sweeper.predict.layerwise.FEATURES order
    # (from models.describe_layers on the meta device), for the layer-wise law.
    layers: tuple[float, ...] | None = None
    # The network's predicted seconds per sample from the layer-time law of its machine's
    # catalog (sweeper.predict.layer_time; None without a catalog), for the target's phase.
    layer_s: float | None = None

    @property
    def group(self) -> tuple[str, str]:
        return (self.hardware_id, self.meter_source)

    @property
    def config_key(self) -> tuple[Any, ...]:
        """Repeats of one configuration share this key and are held out together."""
        return (self.model, self.dataset, self.batch, self.precision, self.params,
                self.macs_per_sample)

    @property
    def model_key(self) -> tuple[Any, ...]:
        """Every run of one architecture instance: held out together by leave-one-model-out."""
        return (self.model, self.params, self.macs_per_sample)


@dataclass(frozen=True)
class Query:
    """A configuration to estimate (possibly never run)."""

    macs_per_sample: float
    params: int
    batch: int
    precision: str
    activations_per_sample: float | None = None
    layers: tuple[float, ...] | None = None  # as Observation.layers
    layer_s: float | None = None  # as Observation.layer_s


def query_of(o: Observation) -> Query:
    """The configuration of a run, as a query (held-out scores predict runs as queries)."""
    return Query(o.macs_per_sample, o.params, o.batch, o.precision, o.activations_per_sample,
                 o.layers, o.layer_s)


@functools.lru_cache(maxsize=65536)
def per_sample(q: Query | Observation) -> dict[str, float]:
    """Per-sample quantities of a query or run (cached: held-out scores refit often; the
    dict is never modified)."""
    out = {"macs": float(q.macs_per_sample), "params": float(q.params), "batch": float(q.batch)}
    if q.activations_per_sample is not None:
        out["acts"] = float(q.activations_per_sample)
    if q.layer_s is not None:
        out["layer_s"] = float(q.layer_s)
    return out
