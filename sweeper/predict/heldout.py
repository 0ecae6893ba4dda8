"""Held-out scores of a law: leave-one-configuration-out and leave-one-model-out, and the
choice of law they drive (nested inside each by-model fold). In-sample errors are never a
quality score here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeper.predict.laws import (
    DEFAULT_LAW,
    Law,
    LawFactory,
    candidate_laws,
    fit_loglinear,
    layer_time_candidates,
)
from sweeper.predict.layerwise import layerwise_candidates
from sweeper.predict.types import Observation, query_of

MIN_CONFIGS_FOR_LOO = 3
MIN_MODELS_FOR_LOMO = 3


@dataclass(frozen=True)
class LooScore:
    """Held-out predictions and their errors (held-out rows only)."""

    run_ids: tuple[int, ...]
    actual_j: tuple[float, ...]
    predicted_j: tuple[float, ...]  # each row predicted by a fit that never saw its group
    n_configs: int  # groups held out in turn (configurations, or models)
    held_out: str = "configuration"  # or "model"
    laws: tuple[str, ...] = ()  # the law each fold chose, where chosen inside the fold
    groups: tuple[int, ...] = ()  # each row's held-out group (its fold), by index

    def coverage(self, level: float = 0.9) -> float | None:
        """How often a row falls inside the `level` band the estimator would give it, from
        the log residuals of every other group (its own never shapes its band).
        None with fewer than three groups."""
        groups = np.asarray(self.groups)
        if len(set(self.groups)) < MIN_CONFIGS_FOR_LOO:
            return None
        residuals = self.log_residuals
        inside = []
        for i, r in enumerate(residuals):
            low, high = residual_band(residuals[groups != groups[i]], level)
            inside.append(low <= r <= high)
        return float(np.mean(inside))

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


def residual_band(residuals: np.ndarray, level: float) -> tuple[float, float]:
    """The band holding a new residual with probability `level` where residuals are
    exchangeable: order statistics at the conformal ranks floor((n+1) tail) and
    ceil((n+1) (1 - tail)), clipped to the extremes (plain quantiles of n residuals cover
    less than `level`: about 60-75% at 90% with the 16-20 of a five-model check)."""
    ordered = np.sort(np.asarray(residuals, dtype=float))
    n = len(ordered)
    tail = (1.0 - level) / 2.0
    low_rank = max(1, math.floor((n + 1) * tail))
    high_rank = min(n, math.ceil((n + 1) * (1.0 - tail)))
    return float(ordered[low_rank - 1]), float(ordered[high_rank - 1])


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
                predicted[i] = math.exp(law.predict_ln(query_of(o)))
    order = range(len(observations))
    return LooScore(
        run_ids=tuple(observations[i].run_id for i in order),
        actual_j=tuple(observations[i].per_sample for i in order),
        predicted_j=tuple(predicted[i] for i in order),
        n_configs=len(groups), held_out=held_out, laws=tuple(laws),
        groups=tuple(groups.index(key(observations[i])) for i in order),
    )


def all_candidates(observations: Sequence[Observation]) -> dict[str, LawFactory]:
    """Every law the data can support, least preferred first: the size laws
    (sweeper.predict.laws), then the layer-wise law where every run has its layers (it tells
    apart networks of equal MACs), then the layer-time law where the machine has a layer
    catalog (the most informed: each layer's cost measured on this machine)."""
    return {**candidate_laws(observations), **layerwise_candidates(observations),
            **layer_time_candidates(observations)}


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
    candidates = dict(reversed(list(all_candidates(observations).items())))
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
    return np.exp([fit.predict_ln(query_of(o)) for o in observations])

