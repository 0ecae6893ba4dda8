"""The laws that compete for an energy fit: log-linear in the sizes, and additive work
terms with non-negative coefficients (see sweeper.predict.estimator for why both), and
which of them a set of observations can support."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sweeper.predict.types import Observation, Query, per_sample

CONTINUOUS = ("ln_macs", "ln_params", "ln_batch")
SIZE_COLUMNS = ("ln_macs", "ln_params", "ln_acts", "ln_layer_s")  # slopes held >= 0

_LABELS = {"macs": "MACs", "params": "params", "batch": "batch", "acts": "activations",
           "layer_s": "layer time (mode=layers)"}


def value_ranges(observations: Sequence[Observation], names: Iterable[str]) -> dict[str, tuple]:
    raws = [per_sample(o) for o in observations]
    return {n: (min(r[n] for r in raws), max(r[n] for r in raws)) for n in names}


def range_notes(
    ranges: dict[str, tuple[float, float]], q: Query, no_effect: Iterable[str]
) -> list[str]:
    """Warnings where a query leaves what the fit has seen."""
    values = per_sample(q)
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
        raw = per_sample(q)
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
        return notes + range_notes(self.ranges, q, frozen)

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
        raw = per_sample(o)
        row = [math.log(raw[c[3:]]) for c in columns]
        row += [1.0 if o.precision == p else 0.0 for p in precisions if p != baseline]
        rows.append(row)
    x = np.asarray(rows, dtype=float).reshape(len(observations), len(names))
    y = np.log([o.per_sample for o in observations])
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
        ranges=value_ranges(observations, [c[3:] for c in columns]),
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

    # What describe() appends to each precision's sum (a subclass's reading of its terms).
    summed_over = ""

    def term_values(self, q: Query) -> list[float]:
        """Each term's value for the query, in `terms` order."""
        raw = per_sample(q)
        if "activations" in self.terms and "acts" not in raw:
            raise ValueError("this fit needs the query's activations per sample")
        return [ADDITIVE_TERMS[t](raw) for t in self.terms]

    def predict_ln(self, q: Query) -> float:
        coef = self.coef.get(q.precision, self.coef[self.baseline_precision])
        value = sum(c * v for c, v in zip(coef, self.term_values(q), strict=True))
        return math.log(max(value, 0.1 * self.floor))

    def notes(self, q: Query) -> list[str]:
        notes = []
        if q.precision not in self.coef:
            notes.append(f"precision {q.precision} is not in the fitted runs; "
                         f"estimated as {self.baseline_precision}")
        return notes + range_notes(self.ranges, q, ())

    def describe(self) -> str:
        parts = []
        for precision, coef in self.coef.items():
            terms = " + ".join(f"{c:.3g}*{t}" for t, c in zip(self.terms, coef, strict=True)
                               if c > 0) or "0"
            parts.append(f"{precision}: y = {terms}{self.summed_over}")
        return "; ".join(parts)


def fit_additive(observations: Sequence[Observation], terms: Sequence[str]) -> Additive:
    """Non-negative least squares of relative error, one fit per precision."""
    if not observations:
        raise ValueError("no observations to fit")
    precisions = sorted({o.precision for o in observations})
    coef: dict[str, tuple[float, ...]] = {}
    for precision in precisions:
        rows = [o for o in observations if o.precision == precision]
        y = np.asarray([o.per_sample for o in rows])
        raws = [per_sample(o) for o in rows]
        a = np.asarray([[ADDITIVE_TERMS[t](r) for t in terms] for r in raws])
        solution = nonnegative_lstsq(a / y[:, None], np.ones(len(y)))  # relative error
        coef[precision] = tuple(float(c) for c in solution)
    names = ["macs", "params", "batch"] + (["acts"] if "activations" in terms else [])
    return Additive(
        terms=tuple(terms), coef=coef,
        baseline_precision="fp32" if "fp32" in coef else precisions[0],
        ranges=value_ranges(observations, names),
        floor=min(o.per_sample for o in observations),
        name="additive(" + ", ".join(terms) + ")",
    )


# --- candidates ----------------------------------------------------------------------------


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
LAYER_TIME_LAW = "log-linear(layer_s, batch)"


def layer_time_candidates(observations: Sequence[Observation]) -> dict[str, LawFactory]:
    """The layer-time law (sweeper.predict.layer_time: this machine's mode=layers catalog
    summed over each network's layers, mapped to the target by one slope), where every run
    has its layer time and two models or more are fitted."""
    if not observations or not all(o.layer_s for o in observations):
        return {}
    if len({o.model_key for o in observations}) < 2:
        return {}
    return {LAYER_TIME_LAW: lambda obs: fit_loglinear(obs, ("ln_layer_s", "ln_batch"))}
