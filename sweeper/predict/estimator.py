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
  CPU preset); fitted for relative error, solved exactly by trying every active set.

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
the data (leave-one-configuration-out with fewer than three models). A prediction's
interval applies the empirical quantiles of the matching held-out log residuals: those
of `lomo` for a model not in the data, those of `loo` otherwise.

No torch and no database here: a configuration's MACs, parameters and activations are
computed by the caller, and observations are read from a store by
sweeper.predict.observations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

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
CONTINUOUS = ("ln_macs", "ln_params", "ln_batch")
SIZE_COLUMNS = ("ln_macs", "ln_params", "ln_acts")  # slopes held >= 0
MIN_CONFIGS_FOR_LOO = 3
MIN_MODELS_FOR_LOMO = 3


class MixedHardwareError(ValueError):
    """Observations from several machines (or meters) were passed to one fit."""


@dataclass(frozen=True)
class Observation:
    """One completed run, reduced to what the fit needs.

    `energy_per_sample_j` is the target's value per sample: joules for the energy targets,
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
    energy_per_sample_j: float
    hardware_label: str = ""
    activations_per_sample: float | None = None

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


def _query(o: Observation) -> Query:
    return Query(o.macs_per_sample, o.params, o.batch, o.precision, o.activations_per_sample)


@functools.lru_cache(maxsize=65536)
def _raw(q: Query | Observation) -> dict[str, float]:
    """Per-sample quantities of a query or run (cached: held-out scores refit often; the
    dict is never modified)."""
    out = {"macs": float(q.macs_per_sample), "params": float(q.params), "batch": float(q.batch)}
    if q.activations_per_sample is not None:
        out["acts"] = float(q.activations_per_sample)
    return out


_LABELS = {"macs": "MACs", "params": "params", "batch": "batch", "acts": "activations"}


def _ranges(observations: Sequence[Observation], names: Iterable[str]) -> dict[str, tuple]:
    raws = [_raw(o) for o in observations]
    return {n: (min(r[n] for r in raws), max(r[n] for r in raws)) for n in names}


def _range_notes(
    ranges: dict[str, tuple[float, float]], q: Query, no_effect: Iterable[str]
) -> list[str]:
    """Warnings where a query leaves what the fit has seen."""
    values = _raw(q)
    notes: list[str] = []
    frozen = set(no_effect)
    for name, (low, high) in ranges.items():
        if name not in values:
            continue
        value = values[name]
        if name in frozen:
            if not math.isclose(value, low, rel_tol=1e-9):
                notes.append(f"every fitted run had {_LABELS[name]} {low:.4g}; "
                             f"{_LABELS[name]} {value:.4g} has no effect in this fit")
        elif not low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
            notes.append(f"{_LABELS[name]} {value:.4g} is outside the fitted range "
                         f"[{low:.4g}, {high:.4g}]: extrapolating")
    return notes


class Law(Protocol):
    """A fitted law: ln of the per-sample value of a query, and what it was fitted on."""

    name: str

    def predict_ln(self, q: Query) -> float: ...

    def notes(self, q: Query) -> list[str]: ...

    def describe(self) -> str: ...


LawFactory = Callable[[Sequence[Observation]], Law]


# --- log-linear ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLinear:
    """One least-squares fit of ln y on the columns that vary in its data."""

    intercept: float
    coef: dict[str, float]
    dropped: tuple[str, ...]
    baseline_precision: str
    precisions: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    name: str = "log-linear"

    def features(self, q: Query) -> dict[str, float]:
        raw = _raw(q)
        values: dict[str, float] = {}
        for column in self.coef:
            if column.startswith("ln_"):
                key = column[3:]
                if key not in raw:
                    raise ValueError(f"this fit needs the query's {_LABELS[key]} per sample")
                values[column] = math.log(raw[key])
            else:
                values[column] = 1.0 if q.precision == column.split("=", 1)[1] else 0.0
        return values

    def predict_ln(self, q: Query) -> float:
        values = self.features(q)
        return self.intercept + sum(c * values[name] for name, c in self.coef.items())

    def notes(self, q: Query) -> list[str]:
        notes = []
        if q.precision not in self.precisions:
            notes.append(f"precision {q.precision} is not in the fitted runs; "
                         f"estimated as {self.baseline_precision}")
        frozen = [c[3:] for c in self.dropped if c.startswith("ln_")]
        return notes + _range_notes(self.ranges, q, frozen)

    def describe(self) -> str:
        terms = [f"{self.intercept:+.3f}"] + [f"{c:+.3f}*{n}" for n, c in self.coef.items()]
        return "ln y = " + " ".join(terms)


def fit_loglinear(
    observations: Sequence[Observation], columns: Sequence[str] = CONTINUOUS
) -> LogLinear:
    """Least squares of ln y on the varying columns (minimum-norm if still collinear)."""
    if not observations:
        raise ValueError("no observations to fit")
    precisions = tuple(sorted({o.precision for o in observations}))
    baseline = "fp32" if "fp32" in precisions else precisions[0]
    names = list(columns) + [f"precision={p}" for p in precisions if p != baseline]
    rows = []
    for o in observations:
        raw = _raw(o)
        row = [math.log(raw[c[3:]]) for c in columns]
        row += [1.0 if o.precision == p else 0.0 for p in precisions if p != baseline]
        rows.append(row)
    x = np.asarray(rows, dtype=float).reshape(len(observations), len(names))
    y = np.log([o.energy_per_sample_j for o in observations])
    varies = np.ptp(x, axis=0) > 1e-12
    used = [n for n, v in zip(names, varies, strict=True) if v]
    design = np.column_stack([np.ones(len(observations)), x[:, varies]])
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    sizes = np.array([False] + [n in SIZE_COLUMNS for n in used])
    if np.any(solution[sizes] < 0):
        # More work never predicts less energy: size slopes are held at or above zero
        # (batch and precision stay free).
        from scipy.optimize import lsq_linear

        low = np.where(sizes, 0.0, -np.inf)
        solution = lsq_linear(design, y, bounds=(low, np.inf), method="bvls").x
    return LogLinear(
        intercept=float(solution[0]),
        coef={n: float(c) for n, c in zip(used, solution[1:], strict=True)},
        dropped=tuple(n for n, v in zip(names, varies, strict=True) if not v),
        baseline_precision=baseline,
        precisions=precisions,
        ranges=_ranges(observations, [c[3:] for c in columns]),
        name="log-linear(" + ", ".join(c[3:] for c in columns) + ")",
    )


# --- additive work terms -------------------------------------------------------------------

ADDITIVE_TERMS: dict[str, Callable[[dict[str, float]], float]] = {
    "MACs": lambda r: r["macs"],
    "activations": lambda r: r["acts"],
    "params/batch": lambda r: r["params"] / r["batch"],
    "1/batch": lambda r: 1.0 / r["batch"],
    "1": lambda r: 1.0,
}


def nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin |a x - b| subject to x >= 0 (scipy's active-set NNLS). Columns are scaled to
    unit norm first, so MACs (1e9) and 1/batch (0.1) are solved on the same footing."""
    from scipy.optimize import nnls

    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(a / scale, b)
    return coef / scale


@dataclass(frozen=True)
class Additive:
    """y = sum of non-negative work terms, one set of coefficients per precision."""

    terms: tuple[str, ...]
    coef: dict[str, tuple[float, ...]]  # precision -> one coefficient per term
    baseline_precision: str
    ranges: dict[str, tuple[float, float]]
    floor: float  # the smallest value seen: a prediction never goes below a tenth of it
    name: str = "additive"

    def predict_ln(self, q: Query) -> float:
        raw = _raw(q)
        if "activations" in self.terms and "acts" not in raw:
            raise ValueError("this fit needs the query's activations per sample")
        coef = self.coef.get(q.precision, self.coef[self.baseline_precision])
        value = sum(c * ADDITIVE_TERMS[t](raw) for t, c in zip(self.terms, coef, strict=True))
        return math.log(max(value, 0.1 * self.floor))

    def notes(self, q: Query) -> list[str]:
        notes = []
        if q.precision not in self.coef:
            notes.append(f"precision {q.precision} is not in the fitted runs; "
                         f"estimated as {self.baseline_precision}")
        return notes + _range_notes(self.ranges, q, ())

    def describe(self) -> str:
        parts = []
        for precision, coef in self.coef.items():
            terms = " + ".join(f"{c:.3g}*{t}" for t, c in zip(self.terms, coef, strict=True)
                               if c > 0) or "0"
            parts.append(f"{precision}: y = {terms}")
        return "; ".join(parts)


def fit_additive(observations: Sequence[Observation], terms: Sequence[str]) -> Additive:
    """Non-negative least squares of relative error, one fit per precision."""
    if not observations:
        raise ValueError("no observations to fit")
    precisions = sorted({o.precision for o in observations})
    coef: dict[str, tuple[float, ...]] = {}
    for precision in precisions:
        rows = [o for o in observations if o.precision == precision]
        y = np.asarray([o.energy_per_sample_j for o in rows])
        raws = [_raw(o) for o in rows]
        a = np.asarray([[ADDITIVE_TERMS[t](r) for t in terms] for r in raws])
        solution = nonnegative_lstsq(a / y[:, None], np.ones(len(y)))  # relative error
        coef[precision] = tuple(float(c) for c in solution)
    names = ["macs", "params", "batch"] + (["acts"] if "activations" in terms else [])
    return Additive(
        terms=tuple(terms), coef=coef,
        baseline_precision="fp32" if "fp32" in coef else precisions[0],
        ranges=_ranges(observations, names),
        floor=min(o.energy_per_sample_j for o in observations),
        name="additive(" + ", ".join(terms) + ")",
    )


# --- candidates and scores -----------------------------------------------------------------


def candidate_laws(observations: Sequence[Observation]) -> dict[str, LawFactory]:
    """The laws the data can support. Size columns (MACs, params, activations) are constant
    within a model, so a law gets at most one per model beyond the first: with two models
    only the MACs slope can be learned, and a richer law would only fit noise. Activations
    only where every run has them; additive terms only where batch varies (else per-step
    and per-sample costs cannot be told apart)."""
    acts = all(o.activations_per_sample for o in observations)
    batches = len({o.batch for o in observations}) > 1
    size_columns = max(1, len({o.model_key for o in observations}) - 1)
    columns = [("ln_macs", "ln_batch"), ("ln_macs", "ln_params", "ln_batch")]
    if acts:
        columns += [("ln_macs", "ln_acts", "ln_batch"),
                    ("ln_macs", "ln_params", "ln_acts", "ln_batch")]
    out: dict[str, LawFactory] = {}
    for cols in columns:
        if len(cols) - 1 > size_columns:
            continue
        name = "log-linear(" + ", ".join(c[3:] for c in cols) + ")"
        out[name] = lambda obs, cols=cols: fit_loglinear(obs, cols)
    if batches:
        term_sets = [("MACs", "params/batch", "1/batch", "1")]
        if acts:
            term_sets.append(("MACs", "activations", "params/batch", "1/batch", "1"))
        for terms in term_sets:
            if len(terms) - 2 > size_columns:  # the size terms: MACs, activations, params
                continue
            out["additive(" + ", ".join(terms) + ")"] = (
                lambda obs, terms=terms: fit_additive(obs, terms)
            )
    return out


DEFAULT_LAW = "log-linear(macs, batch)"


@dataclass(frozen=True)
class LooScore:
    """Held-out predictions and their errors (held-out rows only)."""

    run_ids: tuple[int, ...]
    actual_j: tuple[float, ...]
    predicted_j: tuple[float, ...]  # each row predicted by a fit that never saw its group
    n_configs: int  # groups held out in turn (configurations, or models)
    held_out: str = "configuration"  # or "model"
    laws: tuple[str, ...] = ()  # the law each fold chose, where chosen inside the fold

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
    def mean_abs_log_error(self) -> float:
        return float(np.mean(np.abs(self.log_residuals)))

    @property
    def r2_log(self) -> float:
        """R^2 of ln y from the held-out predictions (nan when ln y does not vary)."""
        ln_y = np.log(self.actual_j)
        total = float(np.sum((ln_y - ln_y.mean()) ** 2))
        if total <= 0.0:
            return float("nan")
        return 1.0 - float(np.sum(self.log_residuals**2)) / total


def _held_out(
    observations: Sequence[Observation],
    key: Callable[[Observation], Any],
    fit: Callable[[Sequence[Observation]], tuple[Law, str]],
    held_out: str,
) -> LooScore:
    groups = sorted({key(o) for o in observations}, key=repr)
    predicted: dict[int, float] = {}
    laws = []
    for group in groups:
        kept = [o for o in observations if key(o) != group]
        law, name = fit(kept)
        laws.append(name)
        for i, o in enumerate(observations):
            if key(o) == group:
                predicted[i] = math.exp(law.predict_ln(_query(o)))
    order = range(len(observations))
    return LooScore(
        run_ids=tuple(observations[i].run_id for i in order),
        actual_j=tuple(observations[i].energy_per_sample_j for i in order),
        predicted_j=tuple(predicted[i] for i in order),
        n_configs=len(groups), held_out=held_out, laws=tuple(laws),
    )


def _fixed(factory: LawFactory, name: str) -> Callable[[Sequence[Observation]], tuple[Law, str]]:
    return lambda obs: (factory(obs), name)


def leave_one_config_out(
    observations: Sequence[Observation], law: LawFactory | None = None
) -> LooScore | None:
    """Held-out prediction of every row, by configuration; None with fewer than three."""
    if len({o.config_key for o in observations}) < MIN_CONFIGS_FOR_LOO:
        return None
    factory = law or (lambda obs: fit_loglinear(obs))
    return _held_out(observations, lambda o: o.config_key, _fixed(factory, ""), "configuration")


def leave_one_model_out(
    observations: Sequence[Observation], law: LawFactory | None = None
) -> LooScore | None:
    """Held-out prediction of every row by a fit that never saw its model. With `law`
    None the law is chosen inside each fold (nested). None with fewer than three models."""
    if len({o.model_key for o in observations}) < MIN_MODELS_FOR_LOMO:
        return None
    fit = _fixed(law, "") if law is not None else choose_law
    return _held_out(observations, lambda o: o.model_key, fit, "model")


# A law replaces the one preferred before it only if its held-out MAPE is lower by more
# than this fraction: with a dozen noisy models, choosing among six laws on small
# differences fits the noise (the nested by-model score shows it).
CHALLENGER_MARGIN = 0.15


def choose_law(observations: Sequence[Observation]) -> tuple[Law, str]:
    """The preferred candidate (the richest physical law the data supports), unless
    another has a clearly lower held-out error (by model where there are three models or
    more, else by configuration); fitted on all of `observations`."""
    candidates = dict(reversed(list(candidate_laws(observations).items())))
    n_models = len({o.model_key for o in observations})
    n_configs = len({o.config_key for o in observations})
    if n_models >= MIN_MODELS_FOR_LOMO:
        score = leave_one_model_out
    elif n_configs >= MIN_CONFIGS_FOR_LOO:
        score = leave_one_config_out
    else:
        return candidates[DEFAULT_LAW](observations), DEFAULT_LAW
    best_name, best_error = DEFAULT_LAW, math.inf
    for name, factory in candidates.items():
        result = score(observations, factory)
        error = math.inf if result is None else result.mape
        if error < best_error * (1.0 - CHALLENGER_MARGIN) - 1e-12:
            best_name, best_error = name, error
    return candidates[best_name](observations), best_name


def in_sample_predictions(observations: Sequence[Observation]) -> np.ndarray:
    """Predictions of a fit that saw every row: for diagnosis only, never a quality score."""
    fit = fit_loglinear(observations)
    return np.exp([fit.predict_ln(_query(o)) for o in observations])


# --- fits and predictions ------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """An estimate (per sample: J, or s for a time target) with its interval and where its
    fit came from."""

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
    lomo_mape: float | None = None
    n_models: int = 0
    known_model: bool = False  # the query's model is in the fitted runs
    law: str = ""

    @property
    def estimated(self) -> bool:
        """True when the fitted energies were themselves estimates, not measurements."""
        return "estimate" in self.meter_source

    @property
    def interval_from(self) -> str:
        return "held-out configurations" if self.known_model else "held-out models"

    def scaled(self, samples: int) -> tuple[float, float | None, float | None]:
        """Point and interval for `samples` samples."""
        return (
            self.energy_per_sample_j * samples,
            None if self.low_j is None else self.low_j * samples,
            None if self.high_j is None else self.high_j * samples,
        )


def _band(score: LooScore | None, level: float) -> tuple[float, float] | None:
    if score is None:
        return None
    tail = (1.0 - level) / 2.0
    residuals = score.log_residuals
    return (float(np.quantile(residuals, tail)), float(np.quantile(residuals, 1.0 - tail)))


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
        low = high = None
        if band is not None:
            low, high = point * math.exp(band[0]), point * math.exp(band[1])
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
            lomo_mape=None if self.lomo is None else self.lomo.mape,
            n_models=self.n_models, known_model=known, law=self.law,
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
    factory = candidate_laws(observations)[name]
    loo = leave_one_config_out(observations, factory)
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
