"""`sampler: frontier`, the study's guideline "estimate before you run" as a search.

Each configuration's training energy is predicted before it runs (FrontierEnergy: the
measured energy of a configuration that differs only in what does not change energy,
else sweeper.predict.estimator's log-linear fit on MACs, parameters, batch and precision, else a
MACs x samples proxy); its validation accuracy is predicted with an uncertainty
(AccuracyModel: Bayesian linear regression of logit accuracy on the parameter values and
their pairs). The next trial is the configuration with the largest expected
hypervolume gain per predicted joule. Gains are valued on scaled axes (issue 24): nines
of accuracy (-log10 of the error), so a plausible gain at the accurate end, the end users
ask for, is not lost in the area a cheap model holds, and log energy, so the cheap end
counts too; against the front as good as each point's stored energy uncertainty allows,
and over the accuracy model's uncertainty of the true accuracy without its measurement
noise, so noise is not chased. A configuration that could not join the front even at its
optimistic accuracy (mean + `optimism` standard deviations) is skipped without running,
and the search ends when nothing left is expected to add at least `min_gain` of the
front's hypervolume.

Each trial is also given an energy limit (`FRONTIER_LIMIT_ATTR`): the training energy of
the cheapest trial on the front at or above its optimistic accuracy. The search loop
passes it on as `sweeper.max_energy_train_j`, so the run's short profile stops it as soon
as its forecast shows it would be dominated (sweeper/run/stopping.py).

A finite space is searched point by point; a float or wide integer range is cut into
`grid_points` values (log-spaced where the range is logarithmic).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from sweeper.errors import ConfigError
from sweeper.search.frontier_accuracy import AccuracyModel, sigmoid
from sweeper.search.frontier_energy import FrontierEnergy, params_key
from sweeper.search.hypervolume import gains, hypervolume, pareto_front
from sweeper.search.study import TrialLimit

FRONTIER_LIMIT_ATTR = "frontier_limit_j"  # the trial's training-energy limit (J)
PREDICTED_ATTR = "frontier_predicted_energy_train_j"
OPTIMISTIC_ATTR = "frontier_optimistic_accuracy"
ENERGY_ATTR = "energy_train_j"
FORECAST_ATTR = "forecast_energy_train_j"
MAX_CANDIDATES = 20_000
_QUANTILES = 32


Params = dict[str, Any]


def candidates(
    distributions: Mapping[str, BaseDistribution], grid_points: int = 4
) -> list[Params]:
    """Every point of the space, with ranges cut into grid_points values."""
    axes: list[list[Any]] = []
    for name, dist in distributions.items():
        axes.append(_axis(name, dist, grid_points))
    count = math.prod(len(a) for a in axes)
    if count > MAX_CANDIDATES:
        raise ConfigError(
            f"invalid value for 'hydra.sweeper.sampler': 'frontier' enumerates the space, and "
            f"this one has {count} points (at most {MAX_CANDIDATES}); narrow the space"
        )
    return [dict(zip(distributions, values, strict=True)) for values in itertools.product(*axes)]


def _axis(name: str, dist: BaseDistribution, points: int) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        values = list(range(dist.low, dist.high + 1, dist.step))
        if len(values) <= max(points, 2):
            return values
        spaced = _spaced(dist.low, dist.high, points, dist.log)
        return sorted({min(values, key=lambda v, s=s: abs(v - s)) for s in spaced})
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = int(round((dist.high - dist.low) / dist.step)) + 1
            if n <= max(points, 2):
                return [dist.low + i * dist.step for i in range(n)]
        return [float(f"{v:.6g}") for v in _spaced(dist.low, dist.high, points, dist.log)]
    raise ConfigError(f"search parameter {name!r}: {type(dist).__name__} is not supported "
                      "by the frontier sampler")


def _spaced(low: float, high: float, points: int, log: bool) -> list[float]:
    if points <= 1 or low == high:
        return [low]
    if log:
        return list(np.exp(np.linspace(math.log(low), math.log(high), points)))
    return list(np.linspace(low, high, points))


# --- the sampler ----------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    params: Params
    predicted_j: float
    optimistic_accuracy: float
    expected_gain: float
    limit_j: float | None


class FrontierSampler(BaseSampler):
    """Cost-aware search for the accuracy/energy front (objectives: maximise accuracy,
    minimise a training energy). See the module docstring."""

    def __init__(
        self,
        distributions: Mapping[str, BaseDistribution],
        energy: FrontierEnergy,
        *,
        seed: int | None = None,
        optimism: float = 2.0,
        min_gain: float = 0.002,
        grid_points: int = 4,
    ) -> None:
        self.distributions = dict(distributions)
        self.energy = energy
        self.optimism = optimism
        self.min_gain = min_gain
        self.points = candidates(self.distributions, grid_points)
        self._rng = np.random.RandomState(seed)
        self._order = self._rng.permutation(len(self.points))  # ties break by seed
        self._next: tuple[tuple[tuple[int, int], ...], Choice | None] | None = None
        self.stop_reason: str | None = None

    def reseed_rng(self) -> None:
        self._rng.seed()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        if self._next is not None and self._next[0] == _state(others):
            choice = self._next[1]  # planned by should_stop on the same trials
        else:
            choice = self.plan(others)
        self._next = None
        if choice is None:  # nothing worth running; a loop that asks should_stop stops first
            choice = self._fallback(others)
        storage = study._storage  # samplers record their reasoning as NSGA-II does
        storage.set_trial_user_attr(trial._trial_id, PREDICTED_ATTR, round(choice.predicted_j, 3))
        storage.set_trial_user_attr(
            trial._trial_id, OPTIMISTIC_ATTR, round(choice.optimistic_accuracy, 4))
        if choice.limit_j is not None:
            storage.set_trial_user_attr(trial._trial_id, FRONTIER_LIMIT_ATTR,
                                        round(choice.limit_j, 3))
        return {k: v for k, v in choice.params.items() if k in search_space}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """A parameter outside the bound space: drawn at random."""
        return optuna.samplers.RandomSampler(seed=int(self._rng.randint(2**31))
                                             ).sample_independent(
            study, trial, param_name, param_distribution)

    def should_stop(self, study: optuna.Study) -> str | None:
        """Why the search should end before asking another trial, or None; the plan made
        here is the one the next ask gets."""
        trials = study.get_trials(deepcopy=False)
        choice = self.plan(trials)
        self._next = (_state(trials), choice)
        return self.stop_reason if choice is None else None

    def plan(self, trials: Sequence[FrozenTrial]) -> Choice | None:
        """The next configuration to run, or None (and stop_reason) when none is worth it."""
        tried = {params_key(t.params) for t in trials if t.params}
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        measured = []
        for t in trials:
            energy_j = t.user_attrs.get(ENERGY_ATTR)
            if t.state != TrialState.COMPLETE or energy_j is None:
                energy_j = t.user_attrs.get(FORECAST_ATTR)
            if energy_j is not None and t.params:
                measured.append((t.params, float(energy_j)))
        self.energy.observe(measured)
        model = AccuracyModel(list(self.distributions))
        model.fit([t.params for t in done], [t.values[0] for t in done])
        front = pareto_front([(t.values[0], t.values[1]) for t in done])
        open_points = [i for i in self._order if params_key(self.points[i]) not in tried]
        if not open_points:
            self.stop_reason = f"every one of the {len(self.points)} configurations was tried"
            return None
        predicted = {i: self.energy.predict_j(self.points[i]) for i in open_points}
        e_ref = 1.1 * max([*predicted.values(), *(e for _, e in front)])
        # Gains are valued on scaled axes (nines of accuracy, log energy), against the
        # front as good as its measurements' uncertainty allows (noise is not chased).
        ref = scaled(0.0, e_ref)
        noisy_front = [scaled(a, e - u) for a, e, u in _front_with_uncertainty(done)]
        current = hypervolume(noisy_front, ref)
        z = np.array([_normal_quantile((k + 0.5) / _QUANTILES) for k in range(_QUANTILES)])
        best: Choice | None = None
        best_score = -1.0
        largest = 0.0  # the largest expected gain of any candidate
        floor = self.min_gain * current  # 0 until the front has a point
        for i in open_points:
            params, cost = self.points[i], predicted[i]
            mean, std = model.predict(params, noise=False)  # noise is no gain to plan for
            optimistic = float(sigmoid(np.array(mean + self.optimism * std)))
            accs = sigmoid(mean + std * z)
            valued = gains(noisy_front, [scaled(float(a), cost)
                                         for a in (optimistic, *accs)], ref)
            if valued[0] <= 0.0:
                continue  # dominated even if it turned out as good as hoped
            expected = float(np.mean(valued[1:]))
            largest = max(largest, expected)
            if expected <= floor:
                continue  # not worth a run, however cheap
            score = expected / max(cost, 1e-12)
            if score > best_score:
                limit = min((e for a, e in front if a >= optimistic), default=None)
                best_score = score
                best = Choice(dict(params), cost, optimistic, expected, limit)
        if best is None and largest <= 0.0:
            self.stop_reason = (f"no untried configuration can join the front, even at "
                                f"mean + {self.optimism:g} sd of its predicted accuracy")
            return None
        if best is None:
            self.stop_reason = (f"no untried configuration is expected to add more than "
                                f"{largest / current:.2%} of the front's hypervolume "
                                f"(min_gain {self.min_gain:.2%})")
            return None
        self.stop_reason = None
        return best

    def _fallback(self, trials: Sequence[FrozenTrial]) -> Choice:
        tried = {params_key(t.params) for t in trials if t.params}
        open_points = [i for i in self._order if params_key(self.points[i]) not in tried]
        i = open_points[0] if open_points else int(self._order[0])
        return Choice(dict(self.points[i]), self.energy.predict_j(self.points[i]), 1.0, 0.0,
                      None)


def sampler_stop_reason(study: optuna.Study) -> str | None:
    """Why the study's sampler wants the search to end now (frontier only), or None."""
    should_stop = getattr(study.sampler, "should_stop", None)
    return should_stop(study) if callable(should_stop) else None


def tighter_limit(limit: TrialLimit | None, user_attrs: Mapping[str, Any]) -> TrialLimit | None:
    """The loop's limit for a trial, or the frontier sampler's own if that is tighter."""
    own = user_attrs.get(FRONTIER_LIMIT_ATTR)
    if own is None or (limit is not None and limit.limit_j <= own):
        return limit
    return TrialLimit(float(own), "dominated by the front even at its optimistic accuracy")


ERROR_FLOOR = 1e-3  # accuracy is valued up to 99.9% (three nines)
UNCERTAINTY_ATTR = "energy_train_uncertainty_j"


def scaled(accuracy: float, energy_j: float) -> tuple[float, float]:
    """A point on the axes the frontier values gains on: nines of accuracy (-log10 of the
    error: 0.979 -> 0.986 counts as much as 0.79 -> 0.86, so a plausible gain at the
    accurate end, where users plan, is not lost in the area of the cheap end) and log10
    of the energy (halving a cheap run's joules counts as much as an expensive one's)."""
    return (-math.log10(max(1.0 - accuracy, ERROR_FLOOR)),
            math.log10(max(energy_j, 1e-9)))


def _front_with_uncertainty(
    done: Sequence[FrozenTrial],
) -> list[tuple[float, float, float]]:
    """(accuracy, energy, its stored uncertainty) of the completed trials: a point within
    a front point's uncertainty of it is no gain."""
    out = []
    for t in done:
        energy_j = float(t.values[1])
        unc = t.user_attrs.get(UNCERTAINTY_ATTR)
        unc_j = min(float(unc), 0.5 * energy_j) if unc is not None and unc > 0 else 0.0
        out.append((float(t.values[0]), energy_j, unc_j))
    return out


def _state(trials: Sequence[FrozenTrial]) -> tuple[tuple[int, int], ...]:
    return tuple((t.number, int(t.state)) for t in trials)


def _normal_quantile(p: float) -> float:
    return NormalDist().inv_cdf(p)
