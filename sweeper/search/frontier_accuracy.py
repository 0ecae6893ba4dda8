"""The frontier sampler's prediction of a configuration's validation accuracy, with an
uncertainty that stays at its prior for values never tried (so optimism can reach them)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def sigmoid(x: np.ndarray) -> np.ndarray:
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
        y = np.array([logit(a) for a in accuracies])
        prior_precision = np.diag(1.0 / np.asarray(self._prior_var))
        beta = 1.0 / self.noise_std**2
        cov = np.linalg.inv(prior_precision + beta * x.T @ x)
        self._cov = cov
        self._mean = beta * cov @ x.T @ y if len(y) else np.zeros(len(self._index))

    def predict(self, params: Mapping[str, Any], *, noise: bool = True) -> tuple[float, float]:
        """Mean and standard deviation of logit(accuracy): of a measurement, or, without
        ``noise``, of the configuration's true accuracy (what a run could gain for sure)."""
        x = self._features(params, grow=False)
        if self._mean is None or self._cov is None:
            return 0.0, math.sqrt(self._prior_var[0] + len(self.names) * self.prior_std**2)
        unseen = sum(1 for name in self.names
                     if (name, repr(params.get(name))) not in self._index)
        var = float(x @ self._cov @ x) + unseen * self.prior_std**2
        if noise:
            var += self.noise_std**2
        return float(x @ self._mean), math.sqrt(var)
