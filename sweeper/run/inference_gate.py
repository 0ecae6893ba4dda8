"""Whether a search trial measures its inference benchmark.

A search whose objective is training energy ranks a trial without its E_in, yet every
run pays the benchmark as a fixed cost: at least 20 refreshes of the slowest meter (0.2 s
at full power for the estimate meter, about 2 s on NVML), which on the cheap models a
search runs most is most of the run's energy. So the search hands each trial its front so
far (`sweeper.inference_front`). A trial that one of those points dominates can never join
the front (later fronts only dominate more), and its E_in would describe a configuration
nobody will choose: it skips the benchmark and says so in its stop_reason, E_in NULL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sweeper.pareto import dominates

FRONT_KEY = "inference_front"  # the run config's sweeper.inference_front
SKIPPED = "inference benchmark skipped"  # how such a run's stop_reason begins
Point = tuple[float, float]  # (val accuracy, training joules)


def dominating_point(
    front: Sequence[Point] | None, accuracy: float | None, energy_train_j: float | None,
    uncertainty_j: float = 0.0,
) -> Point | None:
    """A front point at least as accurate for at most as many training joules, and better
    in one of the two, even at the fewest joules the trial's E_tr may be within its
    ``uncertainty_j`` (on NVML the last epoch may still be its boundary reads, off by up to
    a refresh): a trial that might join the front is measured. None when there is none, or
    nothing to judge by."""
    if not front or accuracy is None or energy_train_j is None:
        return None
    if not (math.isfinite(accuracy) and math.isfinite(energy_train_j)):
        return None
    fewest_j = max(energy_train_j - max(uncertainty_j, 0.0), 0.0)
    better = [p for p in front if dominates(p, (accuracy, fewest_j))]
    return min(better, key=lambda p: (p[1], -p[0]), default=None)


def skip_reason(point: Point, accuracy: float, energy_train_j: float,
                uncertainty_j: float = 0.0) -> str:
    within = f" +- {uncertainty_j:.2g} J" if uncertainty_j > 0 else ""
    return (f"{SKIPPED}: val accuracy {accuracy:.4f} for "
            f"{energy_train_j:.4g} J{within} of training is dominated by the search's front "
            f"point ({point[0]:.4f}, {point[1]:.4g} J)")


def needs_inference(front: Sequence[Point] | None) -> bool:
    """Whether a job must measure E_in, and so may not take as done a run that skipped it:
    any job but a search trial sent a front (an empty one too: its objective is E_tr)."""
    return front is None


def skipped_inference(stop_reason: str | None) -> bool:
    """Whether a run's stop_reason says it skipped its inference benchmark."""
    return bool(stop_reason) and str(stop_reason).startswith(SKIPPED)
