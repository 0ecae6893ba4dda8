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
from sweeper.predict.laws import Additive, LawFactory, nonnegative_lstsq, value_ranges
from sweeper.predict.types import Observation, Query

FEATURES = ("macs_conv", "macs_grouped", "macs_matmul", "moved_compute", "moved_elementwise",
            "params", "layers", "per_sample")
COMPUTE_KINDS = frozenset({"conv", "linear", "attention"})


class Layer(Protocol):
    """What the law needs of a layer (models.info.LayerInfo)."""

    kind: str
    macs: float
    elements_in: float
    elements_out: float
    params: int
    groups: int


def macs_feature(layer: Layer) -> str:
    """Dense convolutions, grouped or depthwise ones (MobileNets, EfficientNet, RegNet,
    ResNeXt: a fraction of a dense kernel's MACs per second) and matmuls cost differently
    per MAC: the estimator benchmark's by-model error fell from 30.5% to 28.8% (training)
    and 53.7% to 48.2% (inference) once grouped ones were their own term."""
    if layer.kind != "conv":
        return "macs_matmul"
    return "macs_grouped" if layer.groups > 1 else "macs_conv"


def layer_features(layers: Iterable[Layer]) -> dict[str, float]:
    """A network's totals, per sample, in the law's terms."""
    out = dict.fromkeys(FEATURES, 0.0)
    out["per_sample"] = 1.0
    for layer in layers:
        out[macs_feature(layer)] += layer.macs
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


# --- the layer-wise law as one of the estimator's candidates -------------------------------

# The per-sample work terms (summed over layers) and, where the batch varies, the per-step
# ones: the optimizer's pass over the weights, a kernel launch per layer, a fixed cost per
# step, each spread over the batch. With one batch size the per-step terms cannot be told
# from per-sample ones, and the law is the per-sample one above.
WORK = ("macs_conv", "macs_grouped", "macs_matmul", "moved_compute", "moved_elementwise")
PER_STEP = ("params/batch", "layers/batch", "1/batch", "1")
PER_SAMPLE = ("params", "layers", "1")
# Seven size terms (the five work terms, parameters, layers): at least this many models
# before the law is offered, so a held-out model leaves enough to resolve most of them
# (the non-negative fit zeroes what the data cannot support).
MIN_MODELS_FOR_LAYERWISE = 5


def _term(name: str, features: Mapping[str, float], batch: float) -> float:
    if name in WORK or name in ("params", "layers"):
        return features[name]
    if name == "1":
        return 1.0
    if name == "1/batch":
        return 1.0 / batch
    return features[name.split("/")[0]] / batch  # params/batch, layers/batch


def _features_of(q: Query | Observation) -> dict[str, float]:
    if q.layers is None:
        raise ValueError("the layer-wise law needs the network's layers (describe_layers)")
    return dict(zip(FEATURES, q.layers, strict=True))


@dataclass(frozen=True)
class LayerwiseWork(Additive):
    """The layer-wise law as an estimator candidate (sweeper.predict.laws.Law): per
    precision, y = sum of non-negative coefficients x the network's layer totals; the
    additive law's fit and reading, on layer totals instead of whole-network sizes."""

    name: str = "layer-wise"
    summed_over = " (summed over the layers)"

    def term_values(self, q: Query) -> list[float]:
        features = _features_of(q)
        return [_term(t, features, q.batch) for t in self.terms]


def fit_layerwise_work(observations: Sequence[Observation]) -> LayerwiseWork:
    """Non-negative least squares of relative error, one fit per precision (the same
    solver as the additive law: columns scaled, every row weighted by 1/value)."""
    if not observations:
        raise ValueError("no observations to fit")
    terms = WORK + (PER_STEP if len({o.batch for o in observations}) > 1 else PER_SAMPLE)
    precisions = sorted({o.precision for o in observations})
    coef: dict[str, tuple[float, ...]] = {}
    for precision in precisions:
        rows = [o for o in observations if o.precision == precision]
        y = np.asarray([o.per_sample for o in rows])
        a = np.asarray([[_term(t, _features_of(o), o.batch) for t in terms] for o in rows])
        coef[precision] = tuple(float(c) for c in nonnegative_lstsq(a / y[:, None],
                                                                    np.ones(len(y))))
    return LayerwiseWork(
        terms=terms, coef=coef, baseline_precision="fp32" if "fp32" in coef else precisions[0],
        ranges=value_ranges(observations, ("macs", "params", "batch")),
        floor=min(o.per_sample for o in observations),
        name="layer-wise(" + ", ".join(terms) + ")",
    )


def layerwise_candidates(observations: Sequence[Observation]) -> dict[str, LawFactory]:
    """The layer-wise law, where every run has its layers and enough models are fitted."""
    if not observations or any(o.layers is None for o in observations):
        return {}
    if len({o.model_key for o in observations}) < MIN_MODELS_FOR_LAYERWISE:
        return {}
    varies = len({o.batch for o in observations}) > 1
    name = "layer-wise(" + ", ".join(WORK + (PER_STEP if varies else PER_SAMPLE)) + ")"
    return {name: fit_layerwise_work}


def feature_tuple(layers: Iterable[Layer]) -> tuple[float, ...]:
    """A network's layer totals in FEATURES order (what Observation.layers holds)."""
    features = layer_features(layers)
    return tuple(features[name] for name in FEATURES)
