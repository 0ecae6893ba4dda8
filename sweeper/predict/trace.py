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

from sweeper.predict.forecast import Forecast, extrapolate, window_steps


def profile_plan(total_steps: int, window: float, warmup_steps: int) -> tuple[int, int]:
    """(warm-up steps, profiled steps) a ProfileWindow uses for a run of total_steps.

    Short runs cannot spare warm-up steps: at least one step is always profiled.
    """
    warmup = min(warmup_steps, max(total_steps - 1, 0))
    return warmup, min(window_steps(total_steps, window), total_steps - warmup)


def forecast_error(predicted: float, actual: float) -> float:
    """Signed relative error of a forecast: +0.1 means 10% too high (the runs table's rule)."""
    return (predicted - actual) / actual


@dataclass
class StepTrace:
    """Cumulative energy (J) and time (s) at every step boundary; index 0 is the start."""

    read_energy_j: Callable[[], float]
    clock: Callable[[], float] = time.perf_counter
    energy_j: list[float] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.energy_j[:] = [self.read_energy_j()]
        self.time_s[:] = [self.clock()]

    def on_step(self, step: int) -> None:
        """Step hook (global step count after each step), like ProfileWindow.on_step."""
        if self.energy_j and len(self.energy_j) == step:
            self.energy_j.append(self.read_energy_j())
            self.time_s.append(self.clock())

    @property
    def steps(self) -> int:
        return max(len(self.energy_j) - 1, 0)

    @property
    def energy_total_j(self) -> float:
        return self.energy_j[-1] - self.energy_j[0] if self.energy_j else 0.0

    @property
    def duration_total_s(self) -> float:
        return self.time_s[-1] - self.time_s[0] if self.time_s else 0.0


def forecast_from_trace(
    energy_j: Sequence[float], time_s: Sequence[float], window: float, warmup_steps: int
) -> Forecast:
    """The forecast a ProfileWindow with this window would have made on this trace."""
    total = len(energy_j) - 1
    if total < 1 or len(time_s) != len(energy_j):
        raise ValueError("a trace needs one reading per step boundary and at least one step")
    warmup, profiled = profile_plan(total, window, warmup_steps)
    end = warmup + profiled
    return extrapolate(
        total_steps=total,
        warmup_steps=warmup,
        profiled_steps=profiled,
        warmup_energy_j=energy_j[warmup] - energy_j[0],
        warmup_duration_s=time_s[warmup] - time_s[0],
        profile_energy_j=energy_j[end] - energy_j[warmup],
        profile_duration_s=time_s[end] - time_s[warmup],
        window=window,
    )
