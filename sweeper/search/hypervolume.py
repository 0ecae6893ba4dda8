"""The two-objective front (accuracy up, energy down) and its hypervolume, which the frontier
sampler's expected gain is measured in."""

from __future__ import annotations

from collections.abc import Sequence

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


def gain(front: Sequence[tuple[float, float]], point: tuple[float, float],
         ref: tuple[float, float]) -> float:
    """Hypervolume a point would add to the front."""
    return hypervolume([*front, point], ref) - hypervolume(front, ref)
