"""Forecasts recomputed after the fact from a step-level energy trace.

A run's ProfileWindow forecasts once, for one window. Recording the cumulative energy and
time at every step boundary instead gives the forecast of any window on the same run, so
window sizes can be compared without the run-to-run noise of separate runs (the
benchmark and the tests use this). The plan and the rule are the ProfileWindow's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeper.predict.forecast import (
    Forecast,
    ProfileWindow,
    Reading,
    epoch_window_steps,
    joules,
    window_steps,
)


def profile_plan(total_steps: int, window: float, warmup_steps: int,
                 steps_per_epoch: int | None = None) -> tuple[int, int]:
    """(warm-up steps, profiled steps) a ProfileWindow plans for a run of total_steps
    (warm-up at its floor: it goes on until the per-step energy settles).

    Short runs cannot spare warm-up steps: at least one step is always profiled.
    """
    warmup = min(warmup_steps, max(total_steps - 1, 0))
    steps = epoch_window_steps(window_steps(total_steps, window), steps_per_epoch)
    return warmup, min(steps, total_steps - warmup)


def forecast_error(predicted: float, actual: float) -> float:
    """Signed relative error of a forecast: +0.1 means 10% too high (the runs table's rule)."""
    return (predicted - actual) / actual


@dataclass
class StepTrace:
    """Cumulative energy (J) and time (s) at every step boundary; index 0 is the start.

    ``read_energy_j`` may return readings that settle later (sampler checkpoints):
    ``energy_j`` gives their values as they are when asked, so read it after the run."""

    read_energy_j: Callable[[], Reading]
    clock: Callable[[], float] = time.perf_counter
    readings: list[Reading] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.readings[:] = [self.read_energy_j()]
        self.time_s[:] = [self.clock()]

    def on_step(self, step: int) -> None:
        """Step hook (global step count after each step), like ProfileWindow.on_step."""
        if self.readings and len(self.readings) == step:
            self.readings.append(self.read_energy_j())
            self.time_s.append(self.clock())

    @property
    def energy_j(self) -> list[float]:
        return [joules(r) for r in self.readings]

    @property
    def steps(self) -> int:
        return max(len(self.readings) - 1, 0)

    @property
    def energy_total_j(self) -> float:
        if not self.readings:
            return 0.0
        return joules(self.readings[-1]) - joules(self.readings[0])

    @property
    def duration_total_s(self) -> float:
        return self.time_s[-1] - self.time_s[0] if self.time_s else 0.0


def forecast_from_trace(
    energy_j: Sequence[float], time_s: Sequence[float], window: float, warmup_steps: int,
    **options: Any,
) -> Forecast:
    """The forecast a ProfileWindow with this window would have made on this trace (the
    window itself, replayed over the recorded step boundaries)."""
    total = len(energy_j) - 1
    if total < 1 or len(time_s) != len(energy_j):
        raise ValueError("a trace needs one reading per step boundary and at least one step")
    at = [0]
    profile = ProfileWindow(total, window, warmup_steps, lambda: energy_j[at[0]],
                            lambda: time_s[at[0]], **options)
    profile.start()
    for step in range(1, total + 1):
        at[0] = step
        profile.on_step(step)
        if profile.result is not None:
            return profile.result
    raise AssertionError("a ProfileWindow closes by the last step")  # pragma: no cover
