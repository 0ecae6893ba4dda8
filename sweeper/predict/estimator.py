"""Energy (or time) per sample of a configuration, estimated from the model's size and
fitted on measured runs.

The study's second finding: MACs and parameters predict energy well enough to estimate a
configuration without running it. Fits are made separately for every (hardware_id,
meter_source) pair, because joules from different machines, or measured against
estimated, must never be mixed silently.

Several laws compete for each fit (the value y is per sample: J, or s for time targets):

- log-linear, on a subset of ln MACs, ln params, ln activations and ln batch, plus a
  precision offset:  ln y = b0 + sum_k b_k ln x_k + c_p [precision == p], the slopes of
  the size columns held at or above zero;
- additive work terms with non-negative coefficients, per precision:
  y = a MACs + b activations + c params/batch + d/batch + e
  (compute, memory traffic, the optimizer's per-step pass over the weights, per-step
  overhead, per-sample data handling). Non-negative so that more work never predicts less
  energy, which a free log-linear fit happily does (a MACs coefficient of -1.31 on the
  CPU preset); fitted for relative error, solved exactly by trying every active set;
- layer-wise (sweeper.predict.layerwise), where every run carries its network's layers
  (models.describe_layers on the meta device) and five models or more are fitted: the same
  non-negative form on the layers' totals (convolution and matmul MACs apart, elements
  moved by compute and by element-wise layers apart, parameters and layers per step).
  Networks of equal MACs (resnet18, preactresnet18, senet18) differ in these, so they get
  different estimates, which no law on MACs and parameters alone can give.

A column with no variation in the data (one batch size, one precision) cannot be learned:
it is dropped and named.

Two honest scores, both from held-out predictions only (in-sample errors are never
reported as quality):
- leave-one-configuration-out (`loo`): every configuration (all repeats of one model,
  dataset, batch size and precision) is predicted by a fit of the others. The model stays
  in the training data at its other batch sizes, so this is the error for a new batch size
  or precision of a model already run;
- leave-one-model-out (`lomo`): every model (all its batch sizes and precisions) is
  predicted by a fit of the other models: the error for a model never run, the case
  `mode=estimate` advertises. The law is chosen inside each fold (nested), so choosing it
  does not leak the held-out model into its own score.
The law used for predictions is the one with the lowest leave-one-model-out MAPE on all
the data (leave-one-configuration-out with fewer than three models). A network already
measured is predicted at its other batch sizes times the law's miss of it
(sweeper.predict.per_network) where that predicts held-out configurations better (the
`loo` score is then the corrected law's; `lomo` holds each model out, so nothing of it
is known there). A prediction's
interval applies the conformal order statistics of the matching held-out log residuals
(heldout.residual_band: plain quantiles of a few dozen residuals cover too little): those
of `lomo` for a model not in the data, those of `loo` otherwise. Its coverage is measured
on the held-out rows, each row's band from the other folds' residuals (LooScore.coverage).

No torch and no database here: a configuration's MACs, parameters and activations are
computed by the caller, and observations are read from a store by
sweeper.predict.observations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sweeper.predict.heldout import (
    LooScore,
    all_candidates,
    choose_law,
    leave_one_config_out,
    leave_one_model_out,
    residual_band,
)
from sweeper.predict.laws import Law
from sweeper.predict.per_network import NetworkCorrected, corrected, network_misses
from sweeper.predict.types import UNITS, MixedHardwareError, Observation, Query


@dataclass(frozen=True)
class Prediction:
    """An estimate (per sample: J, or s for a time target) with its interval and where its
    fit came from."""

    per_sample: float
    low: float | None
    high: float | None
    level: float
    hardware_id: str
    meter_source: str
    hardware_label: str
    n_rows: int
    n_configs: int
    loo_mape: float | None
    loo_r2_log: float | None
    warnings: tuple[str, ...] = ()
    lomo_mape: float | None = None
    n_models: int = 0
    known_model: bool = False  # the query's model is in the fitted runs
    law: str = ""
    # How often the held-out rows fell inside their own interval of this kind (each row's
    # band from the other folds' residuals): the interval's measured coverage.
    coverage: float | None = None

    @property
    def estimated(self) -> bool:
        """True when the fitted energies were themselves estimates, not measurements."""
        return "estimate" in self.meter_source

    @property
    def interval_from(self) -> str:
        """Which held-out rows the interval and its coverage come from: configurations for
        a model already run, or for a new one while too few models are fitted to hold one
        out (``predict``), else models."""
        by_model = not self.known_model and self.lomo_mape is not None
        return "held-out models" if by_model else "held-out configurations"

    def scaled(self, samples: int) -> tuple[float, float | None, float | None]:
        """Point and interval for `samples` samples."""
        return (
            self.per_sample * samples,
            None if self.low is None else self.low * samples,
            None if self.high is None else self.high * samples,
        )


def _band(score: LooScore | None, level: float) -> tuple[float, float] | None:
    if score is None:
        return None
    return residual_band(score.log_residuals, level)


@dataclass(frozen=True)
class EnergyFit:
    """The fit of one target on one (hardware, meter) group, with its held-out quality."""

    target: str
    hardware_id: str
    meter_source: str
    hardware_label: str
    model: Law
    n_rows: int
    n_configs: int
    loo: LooScore | None  # leave-one-configuration-out
    level: float
    residual_band: tuple[float, float] | None = field(default=None)
    lomo: LooScore | None = None  # leave-one-model-out (law chosen inside each fold)
    lomo_band: tuple[float, float] | None = None
    n_models: int = 0
    model_keys: frozenset = frozenset()  # (params, MACs) of the fitted models

    @property
    def estimated(self) -> bool:
        return "estimate" in self.meter_source

    @property
    def law(self) -> str:
        return self.model.name

    @property
    def unit(self) -> str:
        return UNITS.get(self.target, "J")

    def describe(self) -> str:
        """The fitted law in words, for reports."""
        return self.model.describe()

    def knows(self, query: Query) -> bool:
        return (query.params, query.macs_per_sample) in self.model_keys

    def predict(self, query: Query) -> Prediction:
        notes = self.model.notes(query)
        point = math.exp(self.model.predict_ln(query))
        known = self.knows(query)
        band = self.residual_band if known else (self.lomo_band or self.residual_band)
        if not known and self.lomo_band is None and band is not None:
            notes.append(f"only {self.n_models} model(s) fitted: the interval is from held-out "
                         "configurations, too narrow for a model never run")
        score = self.loo if known or self.lomo is None else self.lomo
        coverage = None if score is None else score.coverage(self.level)
        low = high = None
        if band is not None:
            low, high = point * math.exp(band[0]), point * math.exp(band[1])
        else:
            notes.append(f"only {self.n_configs} configuration(s) fitted: no held-out error, "
                         "no interval")
        return Prediction(
            per_sample=point, low=low, high=high, level=self.level,
            hardware_id=self.hardware_id, meter_source=self.meter_source,
            hardware_label=self.hardware_label, n_rows=self.n_rows, n_configs=self.n_configs,
            loo_mape=None if self.loo is None else self.loo.mape,
            loo_r2_log=None if self.loo is None else self.loo.r2_log,
            warnings=tuple(notes),
            lomo_mape=None if self.lomo is None else self.lomo.mape,
            n_models=self.n_models, known_model=known, law=self.law, coverage=coverage,
        )


def fit_energy(
    observations: Sequence[Observation], target: str = "train", level: float = 0.9
) -> EnergyFit:
    """Fit one (hardware, meter) group; refuses a mix instead of averaging machines."""
    groups = sorted({o.group for o in observations})
    if len(groups) != 1:
        listed = ", ".join(f"{h} ({m})" for h, m in groups) or "none"
        raise MixedHardwareError(
            f"one fit needs runs from one hardware and one meter; got {listed}. "
            "Use fit_by_hardware, or pick one."
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    law, name = choose_law(observations)
    factory = all_candidates(observations)[name]
    loo = leave_one_config_out(observations, factory)
    # The law's miss of each network measured, carried to that network's other batch sizes
    # (sweeper.predict.per_network), where it predicts held-out configurations better.
    loo_corrected = leave_one_config_out(observations, corrected(factory))
    if loo is not None and loo_corrected is not None and loo_corrected.mape < loo.mape:
        law, loo = NetworkCorrected(law, network_misses(law, observations)), loo_corrected
    lomo = leave_one_model_out(observations)
    hardware_id, meter = groups[0]
    return EnergyFit(
        target=target, hardware_id=hardware_id, meter_source=meter,
        hardware_label=observations[0].hardware_label, model=law,
        n_rows=len(observations), n_configs=len({o.config_key for o in observations}),
        loo=loo, level=level, residual_band=_band(loo, level),
        lomo=lomo, lomo_band=_band(lomo, level),
        n_models=len({o.model_key for o in observations}),
        model_keys=frozenset((o.params, o.macs_per_sample) for o in observations),
    )


def fit_by_hardware(
    observations: Iterable[Observation], target: str = "train", level: float = 0.9
) -> dict[tuple[str, str], EnergyFit]:
    """One fit per (hardware_id, meter_source) group present."""
    groups: dict[tuple[str, str], list[Observation]] = {}
    for o in observations:
        groups.setdefault(o.group, []).append(o)
    return {g: fit_energy(rows, target, level) for g, rows in sorted(groups.items())}
