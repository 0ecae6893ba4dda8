"""`sampler: frontier`, the study's guideline "estimate before you run" as a search.

Each configuration's training energy is predicted before it runs (FrontierEnergy: the
measured energy of a configuration that differs only in what does not change energy,
else sweeper.predict.estimator's log-linear fit on MACs, parameters, batch and precision, else a
MACs x samples proxy); its validation accuracy is predicted with an uncertainty
(AccuracyModel: Bayesian linear regression of logit accuracy on the parameter values and
their pairs). The next trial is the configuration with the largest expected
hypervolume gain per predicted joule. A configuration that could not join the front
even at its optimistic accuracy (mean + `optimism` standard deviations) is skipped
without running, and the search ends when nothing left is expected to add at least
`min_gain` of the front's hypervolume.

Each trial is also given an energy limit (`FRONTIER_LIMIT_ATTR`): the training energy of
the cheapest trial on the front at or above its optimistic accuracy. The search loop
passes it on as `sweeper.max_energy_train_j`, so the run's short profile stops it as soon
as its forecast shows it would be dominated (sweeper/stopping.py).

A finite space is searched point by point; a float or wide integer range is cut into
`grid_points` values (log-spaced where the range is logarithmic).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
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
from sweeper.predict.laws import fit_loglinear
from sweeper.predict.types import Observation, Query
from sweeper.search.study import TrialLimit

FRONTIER_LIMIT_ATTR = "frontier_limit_j"  # the trial's training-energy limit (J)
PREDICTED_ATTR = "frontier_predicted_energy_train_j"
OPTIMISTIC_ATTR = "frontier_optimistic_accuracy"
ENERGY_ATTR = "energy_train_j"
FORECAST_ATTR = "forecast_energy_train_j"
MIN_CONFIGS_FOR_FIT = 4
MIN_MODELS_FOR_FIT = 3
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


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


# --- energy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SizedParams:
    """What the energy estimate needs about one configuration (sweeper.predict.estimator.Query
    plus how many training samples the run processes over all its epochs)."""

    macs_per_sample: float
    params: int
    batch: int
    precision: str
    train_samples: int

    @property
    def query(self) -> Query:
        return Query(self.macs_per_sample, self.params, self.batch, self.precision)


Describe = Callable[[Mapping[str, Any]], SizedParams]


class FrontierEnergy:
    """Predicted training energy (J) of a configuration, from what has been measured.

    In order of trust: the measured energy of configurations with the same size (they
    differ only in, say, the learning rate, which does not change the work done); the
    estimator's log-linear fit once MIN_CONFIGS_FOR_FIT sizes of MIN_MODELS_FOR_FIT models
    are measured (prior observations, such as earlier runs on this machine, count); the
    MACs x samples proxy scaled by the measurements so far (relative until something is
    measured; proportional to MACs, it overrates larger models, which only delays them).
    """

    def __init__(self, describe: Describe, prior: Sequence[Observation] = ()) -> None:
        self.describe = describe
        self.prior = list(prior)
        self._sizes: dict[tuple[Any, ...], SizedParams] = {}
        self._measured: dict[SizedParams, list[float]] = {}
        self._fit: Any = None

    def size(self, params: Mapping[str, Any]) -> SizedParams:
        key = _key(params)
        if key not in self._sizes:
            self._sizes[key] = self.describe(params)
        return self._sizes[key]

    def observe(self, measured: Sequence[tuple[Mapping[str, Any], float]]) -> None:
        """Measured (or forecast) training energies of the study's trials so far."""
        self._measured = {}
        for params, energy_j in measured:
            if energy_j > 0 and math.isfinite(energy_j):
                self._measured.setdefault(self.size(params), []).append(energy_j)
        observations = [*self.prior, *(
            Observation(run_id=-1, hardware_id="", meter_source="", model=repr(s), dataset="",
                        batch=s.batch, precision=s.precision, params=s.params,
                        macs_per_sample=s.macs_per_sample,
                        energy_per_sample_j=float(np.mean(e)) / s.train_samples)
            for s, e in self._measured.items()
        )]
        sizes = {(o.macs_per_sample, o.params, o.batch, o.precision) for o in observations}
        models = {(o.macs_per_sample, o.params) for o in observations}
        # Fewer than three model sizes leave MACs and parameters unresolved (one: no MACs
        # term at all; two: collinear): such a fit cannot tell another model's cost.
        enough = len(sizes) >= MIN_CONFIGS_FOR_FIT and len(models) >= MIN_MODELS_FOR_FIT
        self._fit = fit_loglinear(observations) if enough else None

    def predict_j(self, params: Mapping[str, Any]) -> float:
        s = self.size(params)
        if s in self._measured:
            return float(np.mean(self._measured[s]))
        if self._fit is not None:
            return math.exp(self._fit.predict_ln(s.query)) * s.train_samples
        proxy = s.macs_per_sample * s.train_samples * 1e-9
        if self._measured:
            ratios = [float(np.mean(e)) / (m.macs_per_sample * m.train_samples * 1e-9)
                      for m, e in self._measured.items()]
            return proxy * float(np.median(ratios))
        return proxy


# --- accuracy -------------------------------------------------------------------------


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class AccuracyModel:
    """Bayesian linear regression of logit(accuracy) on one-hot parameter values and
    value pairs: a value never tried keeps its prior uncertainty, so optimism reaches it."""

    def __init__(self, names: Sequence[str], *, prior_std: float = 1.0,
                 pair_std: float = 0.7, noise_std: float = 0.3) -> None:
        self.names = list(names)
        self.prior_std, self.pair_std, self.noise_std = prior_std, pair_std, noise_std
        self._index: dict[tuple[Any, ...], int] = {("intercept",): 0}
        self._prior_var: list[float] = [2.0**2]
        self._mean: np.ndarray | None = None
        self._cov: np.ndarray | None = None

    def _features(self, params: Mapping[str, Any], grow: bool) -> np.ndarray:
        active = [("intercept",)]
        for name in self.names:
            active.append((name, repr(params.get(name))))
        for a, b in itertools.combinations(self.names, 2):
            active.append((a, repr(params.get(a)), b, repr(params.get(b))))
        if grow:
            for f in active:
                if f not in self._index:
                    self._index[f] = len(self._index)
                    self._prior_var.append((self.prior_std if len(f) == 2 else self.pair_std) ** 2)
        x = np.zeros(len(self._index))
        for f in active:
            if f in self._index:
                x[self._index[f]] = 1.0
        return x

    def fit(self, params: Sequence[Mapping[str, Any]], accuracies: Sequence[float]) -> None:
        if not params:
            self._mean = self._cov = None
            return
        for p in params:
            self._features(p, grow=True)
        x = np.array([self._features(p, grow=False) for p in params])
        y = np.array([_logit(a) for a in accuracies])
        prior_precision = np.diag(1.0 / np.asarray(self._prior_var))
        beta = 1.0 / self.noise_std**2
        cov = np.linalg.inv(prior_precision + beta * x.T @ x)
        self._cov = cov
        self._mean = beta * cov @ x.T @ y if len(y) else np.zeros(len(self._index))

    def predict(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """Mean and standard deviation of logit(accuracy)."""
        x = self._features(params, grow=False)
        if self._mean is None or self._cov is None:
            return 0.0, math.sqrt(self._prior_var[0] + len(self.names) * self.prior_std**2)
        unseen = sum(1 for name in self.names
                     if (name, repr(params.get(name))) not in self._index)
        var = float(x @ self._cov @ x) + unseen * self.prior_std**2 + self.noise_std**2
        return float(x @ self._mean), math.sqrt(var)


# --- hypervolume ----------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(accuracy, energy) points no other point beats on both, cheapest first."""
    front: list[tuple[float, float]] = []
    for acc, energy in sorted(points, key=lambda p: (p[1], -p[0])):
        if not front or acc > front[-1][0]:
            front.append((acc, energy))
    return front


def hypervolume(front: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by the points (accuracy up, energy down) within ref (acc0, e_max)."""
    total = 0.0
    pts = [p for p in pareto_front(front) if p[0] > ref[0] and p[1] < ref[1]]
    for i, (acc, energy) in enumerate(pts):
        right = pts[i + 1][1] if i + 1 < len(pts) else ref[1]
        total += (acc - ref[0]) * (right - energy)  # a staircase: held to the next point
    return total


def gain(front: Sequence[tuple[float, float]], point: tuple[float, float],
         ref: tuple[float, float]) -> float:
    """Hypervolume a point would add to the front."""
    return hypervolume([*front, point], ref) - hypervolume(front, ref)


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
        tried = {_key(t.params) for t in trials if t.params}
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
        open_points = [i for i in self._order if _key(self.points[i]) not in tried]
        if not open_points:
            self.stop_reason = f"every one of the {len(self.points)} configurations was tried"
            return None
        predicted = {i: self.energy.predict_j(self.points[i]) for i in open_points}
        e_ref = 1.1 * max([*predicted.values(), *(e for _, e in front)])
        ref = (0.0, e_ref)
        current = hypervolume(front, ref)
        z = np.array([_normal_quantile((k + 0.5) / _QUANTILES) for k in range(_QUANTILES)])
        best: Choice | None = None
        best_score = -1.0
        largest = 0.0  # the largest expected gain of any candidate
        floor = self.min_gain * current  # 0 until the front has a point
        for i in open_points:
            params, cost = self.points[i], predicted[i]
            mean, std = model.predict(params)
            optimistic = float(_sigmoid(np.array(mean + self.optimism * std)))
            if gain(front, (optimistic, cost), ref) <= 0.0:
                continue  # dominated even if it turned out as good as hoped
            accs = _sigmoid(mean + std * z)
            expected = float(np.mean([gain(front, (a, cost), ref) for a in accs]))
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
        tried = {_key(t.params) for t in trials if t.params}
        open_points = [i for i in self._order if _key(self.points[i]) not in tried]
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


def _state(trials: Sequence[FrozenTrial]) -> tuple[tuple[int, int], ...]:
    return tuple((t.number, int(t.state)) for t in trials)


def _normal_quantile(p: float) -> float:
    return NormalDist().inv_cdf(p)
