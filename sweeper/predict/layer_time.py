"""The layer-time law (issue 24, NeuralPower's method): per-kind cost laws of single layers,
fitted on mode=layers' catalog of this machine, summed over a network's layers.

A layer's time per call at batch B is, per kind (dense, grouped or depthwise convolutions,
linear layers, norms, activations, pooling), a non-negative sum of a fixed cost per call
(launch, dispatch), MACs x B, elements moved x B and parameters (the weight gradient and
its update scale with the weights, not the batch): the law extrapolates across batch sizes
and shapes where a network-level law has only a few networks to learn from. The sum over a
network's layers, per sample, is the feature `layer_s` the estimator's log-linear law maps
to joules and seconds per sample (sweeper.predict.laws); no network is run to build the catalog,
and the held-out scores hold out each network's own runs.

On issue 24's protocol (20 networks, a 2-core AMD VM, estimate meter) the by-model error
of the training energy fell from 25.0% (the law chosen without a catalog) to 13.1% with it,
17.0% on a second run whose repeats were spread over the whole protocol
(benchmarks/estimator_accuracy.py; benchmarks/README.md has both).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sweeper.predict.laws import nonnegative_lstsq
from sweeper.predict.layerwise import Layer
from sweeper.store import LayerCost

PHASES = ("train", "inference")


class LayerWork(NamedTuple):
    """One layer's work per sample, in the law's terms."""

    group: str  # conv, conv_grouped, linear, attention, norm, act, pool, other
    macs: float
    moved: float  # elements read and written
    params: float


def group_of(kind: str, groups: int) -> str:
    if kind == "conv":
        return "conv_grouped" if groups > 1 else "conv"
    return kind


def layer_work(layer: Layer) -> LayerWork:
    return LayerWork(group_of(layer.kind, layer.groups), float(layer.macs),
                     float(layer.elements_in + layer.elements_out), float(layer.params))


def _terms(work: LayerWork, batch: float) -> list[float]:
    return [1.0, work.macs * batch, work.moved * batch, work.params]


@dataclass(frozen=True)
class LayerTimeLaw:
    """Per group, the coefficients of (1, MACs x B, moved x B, params) in seconds per call."""

    coef: dict[str, tuple[float, ...]]
    phase: str
    layers_fitted: int

    def call_s(self, work: LayerWork, batch: float) -> float:
        coef = self.coef.get(work.group)
        if coef is None:  # a kind the catalog lacks: compute like a matmul, else elementwise
            coef = self.coef.get("linear" if work.macs > 0 else "act")
        if coef is None:
            return 0.0
        return float(np.dot(coef, _terms(work, batch)))

    def per_sample_s(self, layers: Iterable[LayerWork], batch: int) -> float:
        """The network's predicted seconds per sample at `batch`: its layers summed."""
        return sum(self.call_s(w, batch) for w in layers) / batch


def fit_layer_time(rows: Sequence[LayerCost], phase: str) -> LayerTimeLaw:
    """Non-negative least squares per group, each row weighted by 1/time (relative error:
    a 20 us activation counts as much as a 50 ms convolution)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    by_group: dict[str, list[LayerCost]] = defaultdict(list)
    for row in rows:
        by_group[group_of(row.kind, row.groups)].append(row)
    coef = {}
    for group, members in by_group.items():
        y = np.array([getattr(r, f"{phase}_s") for r in members], dtype=float)
        if np.any(y <= 0):
            raise ValueError(f"layer times must be positive ({group})")
        a = np.array([_terms(LayerWork(group, r.macs_per_sample,
                                       r.elements_in_per_sample + r.elements_out_per_sample,
                                       float(r.params)), r.batch) for r in members])
        coef[group] = tuple(float(c) for c in nonnegative_lstsq(a / y[:, None],
                                                               np.ones(len(y))))
    return LayerTimeLaw(coef, phase, len(rows))
