"""A layer-wise energy law in the spirit of NeuralPower (issue 24): the per-sample cost of a
network is the sum of its layers' costs, each a non-negative combination of the layer's
work: multiply-accumulates (convolutions apart from matmuls: their kernels differ), the
elements it reads and writes (compute layers apart from element-wise ones: BatchNorm,
activations, pooling move memory and barely compute), its parameters, and a fixed cost per
layer (a kernel launch); plus a cost per sample. Summed over a network's layers, the law is
linear in a few totals, so it is fitted by non-negative least squares on the totals of the
networks measured, in relative terms, and applies to a network never run from its layers
alone (``models.describe_layers`` on the meta device: no data, no compute). Networks with
equal MACs differ in depth, layer kinds and memory traffic (resnet18, preactresnet18 and
senet18), which a MACs law cannot see.

The interval is a prediction interval of the log residuals: Student t on the fit's degrees
of freedom, widened by the network's leverage (how far its totals lie from those fitted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sweeper.predict.forecast import t_quantile
from sweeper.predict.laws import nonnegative_lstsq

FEATURES = ("macs_conv", "macs_matmul", "moved_compute", "moved_elementwise", "params",
            "layers", "per_sample")
COMPUTE_KINDS = frozenset({"conv", "linear"})


class Layer(Protocol):
    """What the law needs of a layer (models.info.LayerInfo)."""

    kind: str
    macs: float
    elements_in: float
    elements_out: float
    params: int


def layer_features(layers: Iterable[Layer]) -> dict[str, float]:
    """A network's totals, per sample, in the law's terms."""
    out = dict.fromkeys(FEATURES, 0.0)
    out["per_sample"] = 1.0
    for layer in layers:
        out["macs_conv" if layer.kind == "conv" else "macs_matmul"] += layer.macs
        moved = layer.elements_in + layer.elements_out
        out["moved_compute" if layer.kind in COMPUTE_KINDS else "moved_elementwise"] += moved
        out["params"] += layer.params
        out["layers"] += 1.0
    return out


@dataclass(frozen=True)
class LayerwiseLaw:
    coef: dict[str, float]
    log_sd: float  # standard deviation of the fit's log residuals
    dof: int
    used: tuple[str, ...]  # the features with a positive coefficient
    inv_gram: np.ndarray  # (A'A)^-1 of the used, relative-weighted columns: leverage

    def predict(self, features: Mapping[str, float]) -> float:
        return sum(c * features[name] for name, c in self.coef.items())

    def interval(self, features: Mapping[str, float], level: float = 0.9) -> tuple[float, float]:
        """A ``level`` prediction interval of a new measurement of this network."""
        mid = self.predict(features)
        if self.dof <= 0 or mid <= 0:
            return 0.0, math.inf
        a = np.array([features[name] / mid for name in self.used])
        leverage = float(a @ self.inv_gram @ a)  # how far from the networks fitted
        half = t_quantile(0.5 + level / 2, self.dof) * self.log_sd * math.sqrt(
            1.0 + leverage)
        return mid * math.exp(-half), mid * math.exp(half)

    def layer_cost(self, layer: Layer) -> float:
        """One layer's share of the per-sample cost (the law's fixed cost per sample
        excluded)."""
        return self.predict(layer_features([layer])) - self.coef.get("per_sample", 0.0)


def fit_layerwise(rows: Sequence[tuple[Mapping[str, float], float]]) -> LayerwiseLaw:
    """Non-negative least squares of the per-sample values on the networks' totals, each
    row weighted by 1/value (relative errors: a small network counts as much as a large)."""
    if not rows:
        raise ValueError("no measured networks to fit a layer-wise law on")
    x = np.array([[f[name] for name in FEATURES] for f, _ in rows])
    y = np.array([value for _, value in rows])
    if np.any(y <= 0):
        raise ValueError("per-sample values must be positive")
    coef = nonnegative_lstsq(x / y[:, None], np.ones(len(y)))
    predicted = x @ coef
    active = [i for i, c in enumerate(coef) if c > 0]
    dof = len(y) - len(active)
    residuals = np.log(np.maximum(predicted, 1e-300) / y)
    log_sd = float(math.sqrt(float(residuals @ residuals) / dof)) if dof > 0 else math.inf
    a = x[:, active] / np.maximum(predicted, 1e-300)[:, None]
    inv_gram = np.linalg.pinv(a.T @ a)
    return LayerwiseLaw(dict(zip(FEATURES, map(float, coef), strict=True)), log_sd, dof,
                        tuple(FEATURES[i] for i in active), inv_gram)
