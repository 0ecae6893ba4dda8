"""The two-objective front (accuracy up, energy down), its hypervolume and the hypervolume
a point would add to it (`gains`), which the frontier sampler's expected gain is measured
in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sweeper.pareto import nondominated


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(accuracy, energy) points no other point beats on both, cheapest first (the plain
    front of sweeper.pareto; a point given twice counts once)."""
    if not points:
        return []
    mask = nondominated([p[0] for p in points], [p[1] for p in points])
    kept = {(float(a), float(e)) for (a, e), on in zip(points, mask, strict=True) if on}
    return sorted(kept, key=lambda p: (p[1], -p[0]))


def hypervolume(front: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by the points (accuracy up, energy down) within ref (acc0, e_max)."""
    total = 0.0
    pts = [p for p in pareto_front(front) if p[0] > ref[0] and p[1] < ref[1]]
    for i, (acc, energy) in enumerate(pts):
        right = pts[i + 1][1] if i + 1 < len(pts) else ref[1]
        total += (acc - ref[0]) * (right - energy)  # a staircase: held to the next point
    return total


def gains(
    front: Sequence[tuple[float, float]], points: Sequence[tuple[float, float]],
    ref: tuple[float, float],
) -> np.ndarray:
    """The hypervolume each point would add to the front, added alone, from one staircase.

    The front dominates, at each energy x, up to the accuracy h(x) of its best point at or
    below x (the reference's accuracy below its cheapest point), so a point (a, e) adds the
    integral over x in [e, ref energy) of max(0, a - h(x)): one sum over the staircase's
    steps, for every point at once. The frontier sampler values thousands of (candidate,
    accuracy quantile) points per plan against one front; recomputing the front's
    hypervolume twice per point was most of its time."""
    if not points:
        return np.zeros(0)
    steps = [p for p in pareto_front(front) if p[0] > ref[0] and p[1] < ref[1]]
    # Step k spans [left_k, right_k) at height_k; the first, below the cheapest front point,
    # at the reference's accuracy (no area).
    left = np.array([-np.inf, *(e for _, e in steps)])
    right = np.array([*(e for _, e in steps), ref[1]])
    height = np.array([ref[0], *(a for a, _ in steps)])
    acc = np.array([p[0] for p in points], dtype=float)[:, None]
    energy = np.array([p[1] for p in points], dtype=float)[:, None]
    width = np.clip(right[None, :] - np.maximum(left[None, :], energy), 0.0, None)
    return (np.clip(acc - height[None, :], 0.0, None) * width).sum(axis=1)
