"""The energy-accuracy front (accuracy up, energy down): the one home of its logic.

`nondominated` is the plain front (no other point at most as costly and at least as accurate,
better in one): the search's hypervolume and Optuna use it. `epsilon_front` is the front a
report shows: a measured energy has an uncertainty, so a point whose energy advantage over a
clearly more accurate point is within the two points' uncertainties does not beat it
(epsilon-dominance), and a model at chance accuracy (it learnt nothing) is never on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# "Clearly more accurate": at least this many accuracy points (as a fraction) better.
ACCURACY_MARGIN = 0.01
# A model within this much of 1/num_classes is "at chance". 0.05 is about 3 standard errors
# of a guessing classifier on 360 evaluation samples (digits' test split): sqrt(0.1*0.9/360).
CHANCE_MARGIN = 0.05


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether (accuracy, energy) point a is at least as accurate as b for at most its
    energy, and better in one: `nondominated`'s relation, for one pair."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def nondominated(accuracy: Sequence[float], energy_j: Sequence[float]) -> np.ndarray:
    """True where no other point has less-or-equal energy and higher-or-equal accuracy
    (and is strictly better in one)."""
    a = np.asarray(accuracy, dtype=float)
    e = np.asarray(energy_j, dtype=float)
    better = (e[None, :] <= e[:, None]) & (a[None, :] >= a[:, None])
    strict = (e[None, :] < e[:, None]) | (a[None, :] > a[:, None])
    return ~(better & strict).any(axis=1)


def at_chance(
    accuracy: Sequence[float], num_classes: Sequence[float], margin: float = CHANCE_MARGIN
) -> np.ndarray:
    """True where accuracy is below 1/num_classes + margin (unknown class count: False)."""
    a = np.asarray(accuracy, dtype=float)
    k = np.asarray(num_classes, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((k >= 2) & (a < 1.0 / k + margin), dtype=bool)


def epsilon_front(
    accuracy: Sequence[float],
    energy_j: Sequence[float],
    energy_uncertainty_j: Sequence[float],
    chance: Sequence[bool] | None = None,
    accuracy_margin: float = ACCURACY_MARGIN,
) -> np.ndarray:
    """True for the points on the uncertainty-aware front: non-dominated, not at chance, and
    not epsilon-dominated: no point at least `accuracy_margin` more accurate costs at most
    this one's energy plus both uncertainties (a missing uncertainty counts as zero)."""
    a = np.asarray(accuracy, dtype=float)
    e = np.asarray(energy_j, dtype=float)
    u = np.nan_to_num(np.asarray(energy_uncertainty_j, dtype=float), nan=0.0)
    off = np.zeros(len(a), dtype=bool) if chance is None else np.asarray(chance, dtype=bool)
    slack = u[:, None] + u[None, :]
    clearly = (a[None, :] >= a[:, None] + accuracy_margin) & ~off[None, :]
    within = e[None, :] <= e[:, None] + slack
    return nondominated(a, e) & ~off & ~(clearly & within).any(axis=1)
