"""Energy of a configuration estimated from the model's size, fitted on measured runs.

The study's second finding: MACs and MACs per parameter predict energy well enough to
estimate a configuration without running it. The model here is a log-log linear
regression, fitted separately for every (hardware_id, meter_source) pair, because joules
from different machines, or measured against estimated, must never be mixed silently:

    ln E = b0 + b1 ln MACs + b2 ln params + b3 ln batch + sum_p c_p [precision == p]

E is the energy per training sample (E_tr / training samples) or per inference sample,
in joules; MACs are the multiply-accumulates of one forward pass of one sample; c_p is the
offset of precision p against fp32 (or the first precision present). MACs per parameter is
in the fit through b1 and b2, since ln(MACs/param) = ln MACs - ln params: the same fit
reads ln E = b0 + (b1 + b2) ln MACs - b2 ln(MACs/param) + ...; a third column for it would
make the design singular. A column with no variation in the data (one batch size, one
precision) cannot be learned: it is dropped and named.

Fit quality is leave-one-configuration-out: every configuration (all repeats of one model,
dataset, batch size and precision) is held out in turn and predicted by a fit of the
others. MAPE and R^2 (of ln E) use those held-out predictions only; in-sample errors are
never reported as quality. The prediction interval applies the empirical quantiles of the
held-out log residuals to the point estimate.

No torch and no database here: a configuration's MACs and parameters are computed by the
caller, and observations are read from a store by sweeper.predict.observations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TARGETS: dict[str, str] = {
    "train": "energy_per_train_sample_j",
    "inference": "energy_per_inference_sample_j",
}
CONTINUOUS = ("ln_macs", "ln_params", "ln_batch")
MIN_CONFIGS_FOR_LOO = 3


class MixedHardwareError(ValueError):
    """Observations from several machines (or meters) were passed to one fit."""


@dataclass(frozen=True)
class Observation:
    """One completed run, reduced to what the fit needs."""

    run_id: int
    hardware_id: str
    meter_source: str
    model: str
    dataset: str
    batch: int
    precision: str
    params: int
    macs_per_sample: float
    energy_per_sample_j: float
    hardware_label: str = ""

    @property
    def group(self) -> tuple[str, str]:
        return (self.hardware_id, self.meter_source)

    @property
    def config_key(self) -> tuple[Any, ...]:
        """Repeats of one configuration share this key and are held out together."""
        return (self.model, self.dataset, self.batch, self.precision, self.params,
                self.macs_per_sample)


@dataclass(frozen=True)
class Query:
    """A configuration to estimate (possibly never run)."""

    macs_per_sample: float
    params: int
    batch: int
    precision: str


def _continuous(macs_per_sample: float, params: int, batch: int) -> dict[str, float]:
    return {
        "ln_macs": math.log(macs_per_sample),
        "ln_params": math.log(params),
        "ln_batch": math.log(batch),
    }


@dataclass(frozen=True)
class LogLinear:
    """One least-squares fit of ln E on the columns that vary in its data."""

    intercept: float
    coef: dict[str, float]
    dropped: tuple[str, ...]
    baseline_precision: str
    precisions: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]

    def features(self, q: Query) -> tuple[dict[str, float], list[str]]:
        """Column values of a query, and warnings where it leaves what the fit has seen."""
        values = _continuous(q.macs_per_sample, q.params, q.batch)
        for p in self.precisions:
            if p != self.baseline_precision:
                values[f"precision={p}"] = 1.0 if q.precision == p else 0.0
        notes: list[str] = []
        if q.precision not in self.precisions:
            notes.append(f"precision {q.precision} is not in the fitted runs; "
                         f"estimated as {self.baseline_precision}")
        for name, (low, high) in self.ranges.items():
            value = values[name]
            if name in self.dropped and not math.isclose(value, low, abs_tol=1e-9):
                notes.append(f"every fitted run had {_pretty(name, low)}; "
                             f"{_pretty(name, value)} has no effect in this fit")
            elif name not in self.dropped and not low - 1e-9 <= value <= high + 1e-9:
                notes.append(f"{_pretty(name, value)} is outside the fitted range "
                             f"[{_number(low)}, {_number(high)}]: extrapolating")
        return values, notes

    def predict_ln(self, q: Query) -> float:
        values, _ = self.features(q)
        return self.intercept + sum(c * values[name] for name, c in self.coef.items())


def _pretty(name: str, ln_value: float) -> str:
    label = {"ln_macs": "MACs", "ln_params": "params", "ln_batch": "batch"}[name]
    return f"{label} {_number(ln_value)}"


def _number(ln_value: float) -> str:
    return f"{math.exp(ln_value):.4g}"


def fit_loglinear(observations: Sequence[Observation]) -> LogLinear:
    """Least squares of ln E on the varying columns (minimum-norm if still collinear)."""
    if not observations:
        raise ValueError("no observations to fit")
    precisions = tuple(sorted({o.precision for o in observations}))
    baseline = "fp32" if "fp32" in precisions else precisions[0]
    names = list(CONTINUOUS) + [f"precision={p}" for p in precisions if p != baseline]
    rows = []
    for o in observations:
        values = _continuous(o.macs_per_sample, o.params, o.batch)
        for p in precisions:
            if p != baseline:
                values[f"precision={p}"] = 1.0 if o.precision == p else 0.0
        rows.append([values[n] for n in names])
    x = np.asarray(rows, dtype=float)
    y = np.log([o.energy_per_sample_j for o in observations])
    varies = np.ptp(x, axis=0) > 1e-12
    used = [n for n, v in zip(names, varies, strict=True) if v]
    design = np.column_stack([np.ones(len(observations)), x[:, varies]])
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    ranges = {n: (float(x[:, i].min()), float(x[:, i].max())) for i, n in enumerate(CONTINUOUS)}
    return LogLinear(
        intercept=float(solution[0]),
        coef={n: float(c) for n, c in zip(used, solution[1:], strict=True)},
        dropped=tuple(n for n, v in zip(names, varies, strict=True) if not v),
        baseline_precision=baseline,
        precisions=precisions,
        ranges=ranges,
    )


def _query(o: Observation) -> Query:
    return Query(o.macs_per_sample, o.params, o.batch, o.precision)


@dataclass(frozen=True)
class LooScore:
    """Leave-one-configuration-out predictions and their errors (held-out rows only)."""

    run_ids: tuple[int, ...]
    actual_j: tuple[float, ...]
    predicted_j: tuple[float, ...]  # each row predicted by a fit that never saw its config
    n_configs: int

    @property
    def relative_errors(self) -> np.ndarray:
        actual = np.asarray(self.actual_j)
        return (np.asarray(self.predicted_j) - actual) / actual

    @property
    def mape(self) -> float:
        """Mean absolute percentage error of the held-out predictions, as a fraction."""
        return float(np.mean(np.abs(self.relative_errors)))

    @property
    def log_residuals(self) -> np.ndarray:
        return np.log(self.actual_j) - np.log(self.predicted_j)

    @property
    def r2_log(self) -> float:
        """R^2 of ln E from the held-out predictions (nan when ln E does not vary)."""
        ln_y = np.log(self.actual_j)
        total = float(np.sum((ln_y - ln_y.mean()) ** 2))
        if total <= 0.0:
            return float("nan")
        return 1.0 - float(np.sum(self.log_residuals**2)) / total


def leave_one_config_out(observations: Sequence[Observation]) -> LooScore | None:
    """Held-out prediction of every row; None with fewer than three configurations."""
    configs = sorted({o.config_key for o in observations}, key=repr)
    if len(configs) < MIN_CONFIGS_FOR_LOO:
        return None
    predicted: dict[int, float] = {}
    for key in configs:
        held = [i for i, o in enumerate(observations) if o.config_key == key]
        kept = [o for o in observations if o.config_key != key]
        fold = fit_loglinear(kept)
        for i in held:
            predicted[i] = math.exp(fold.predict_ln(_query(observations[i])))
    order = range(len(observations))
    return LooScore(
        run_ids=tuple(observations[i].run_id for i in order),
        actual_j=tuple(observations[i].energy_per_sample_j for i in order),
        predicted_j=tuple(predicted[i] for i in order),
        n_configs=len(configs),
    )


def in_sample_predictions(observations: Sequence[Observation]) -> np.ndarray:
    """Predictions of a fit that saw every row: for diagnosis only, never a quality score."""
    fit = fit_loglinear(observations)
    return np.exp([fit.predict_ln(_query(o)) for o in observations])


@dataclass(frozen=True)
class Prediction:
    """An estimate (J per sample) with its interval and where its fit came from."""

    energy_per_sample_j: float
    low_j: float | None
    high_j: float | None
    level: float
    hardware_id: str
    meter_source: str
    hardware_label: str
    n_rows: int
    n_configs: int
    loo_mape: float | None
    loo_r2_log: float | None
    warnings: tuple[str, ...] = ()

    @property
    def estimated(self) -> bool:
        """True when the fitted energies were themselves estimates, not measurements."""
        return "estimate" in self.meter_source

    def scaled(self, samples: int) -> tuple[float, float | None, float | None]:
        """Point and interval for `samples` samples (J)."""
        return (
            self.energy_per_sample_j * samples,
            None if self.low_j is None else self.low_j * samples,
            None if self.high_j is None else self.high_j * samples,
        )


@dataclass(frozen=True)
class EnergyFit:
    """The fit of one target on one (hardware, meter) group, with its held-out quality."""

    target: str
    hardware_id: str
    meter_source: str
    hardware_label: str
    model: LogLinear
    n_rows: int
    n_configs: int
    loo: LooScore | None
    level: float
    residual_band: tuple[float, float] | None = field(default=None)

    @property
    def estimated(self) -> bool:
        return "estimate" in self.meter_source

    def describe(self) -> str:
        """The fitted law in words, for reports."""
        terms = [f"{self.model.intercept:+.3f}"]
        terms += [f"{c:+.3f}*{n}" for n, c in self.model.coef.items()]
        return "ln E = " + " ".join(terms)

    def predict(self, query: Query) -> Prediction:
        values, notes = self.model.features(query)
        ln_e = self.model.intercept + sum(c * values[n] for n, c in self.model.coef.items())
        point = math.exp(ln_e)
        low = high = None
        if self.residual_band is not None:
            low = point * math.exp(self.residual_band[0])
            high = point * math.exp(self.residual_band[1])
        else:
            notes.append(f"only {self.n_configs} configuration(s) fitted: no held-out error, "
                         "no interval")
        return Prediction(
            energy_per_sample_j=point, low_j=low, high_j=high, level=self.level,
            hardware_id=self.hardware_id, meter_source=self.meter_source,
            hardware_label=self.hardware_label, n_rows=self.n_rows, n_configs=self.n_configs,
            loo_mape=None if self.loo is None else self.loo.mape,
            loo_r2_log=None if self.loo is None else self.loo.r2_log,
            warnings=tuple(notes),
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
    loo = leave_one_config_out(observations)
    band = None
    if loo is not None:
        tail = (1.0 - level) / 2.0
        residuals = loo.log_residuals
        band = (float(np.quantile(residuals, tail)), float(np.quantile(residuals, 1.0 - tail)))
    hardware_id, meter = groups[0]
    return EnergyFit(
        target=target, hardware_id=hardware_id, meter_source=meter,
        hardware_label=observations[0].hardware_label, model=fit_loglinear(observations),
        n_rows=len(observations), n_configs=len({o.config_key for o in observations}),
        loo=loo, level=level, residual_band=band,
    )


def fit_by_hardware(
    observations: Iterable[Observation], target: str = "train", level: float = 0.9
) -> dict[tuple[str, str], EnergyFit]:
    """One fit per (hardware_id, meter_source) group present."""
    groups: dict[tuple[str, str], list[Observation]] = {}
    for o in observations:
        groups.setdefault(o.group, []).append(o)
    return {g: fit_energy(rows, target, level) for g, rows in sorted(groups.items())}
