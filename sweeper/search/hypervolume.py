"""The two-objective front (accuracy up, energy down) and its hypervolume, which the frontier
sampler's expected gain is measured in."""

from __future__ import annotations

from collections.abc import Sequence


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
