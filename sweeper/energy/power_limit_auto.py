"""``gpu.power_limit=auto``: profile a few power limits over the first epoch's training
steps and keep the one that spends the least energy per step within ``gpu.max_slowdown``
of the time per step at the card's default limit.

Each limit of ``AUTO_FRACTIONS`` (of the default, highest first, so the reference is
measured first) is set, ``settle_steps`` steps pass (clocks follow a new limit within
milliseconds, but a step launched before it ran at the old one), then a window of at
least ``min_steps`` steps and ``min_seconds`` is measured: energy (every meter, so the
host's power over the longer steps counts too) and time per step. The windows share the
epoch's steps; once every limit is measured, or the epoch runs out, the limit is chosen
and kept for the rest of the run. The profile is recorded with the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.energy.power_limit import PowerCap

AUTO_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6)


@dataclass(frozen=True)
class LimitWindow:
    """One profiled limit: mean applied W over the GPUs, and its measured window."""

    fraction: float
    limit_w: float
    steps: int
    duration_s: float
    energy_j: float

    @property
    def s_per_step(self) -> float:
        return self.duration_s / self.steps

    @property
    def j_per_step(self) -> float:
        return self.energy_j / self.steps


def choose(windows: Sequence[LimitWindow], max_slowdown: float) -> LimitWindow:
    """The least energy per step among limits no more than ``max_slowdown`` slower per
    step than the first (the default limit's) window."""
    reference = windows[0]
    allowed = [w for w in windows if w.s_per_step <= reference.s_per_step * (1 + max_slowdown)]
    return min(allowed, key=lambda w: w.j_per_step)


class AutoPowerLimit:
    """The training step hook that profiles the limits and keeps the best (``on_step``)."""

    def __init__(
        self, cap: PowerCap, energy_j: Callable[[], float], clock: Callable[[], float],
        steps_available: int, *, fractions: Sequence[float] = AUTO_FRACTIONS,
        settle_steps: int = 2, min_steps: int = 5, min_seconds: float = 2.0,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self.cap, self.energy_j, self.clock = cap, energy_j, clock
        self.sync = sync  # waits for the device's queued work (a window edge is its end)
        self.fractions = list(fractions)
        self.steps_available = steps_available
        self.settle_steps, self.min_steps, self.min_seconds = settle_steps, min_steps, min_seconds
        self.windows: list[LimitWindow] = []
        self.chosen: LimitWindow | None = None
        self._stage = -1
        self._limit_w = math.nan
        self._stage_step = 0
        self._start: tuple[int, float, float] | None = None  # step, clock, energy
        self._next_stage(0)

    @property
    def done(self) -> bool:
        return self.chosen is not None or self._stage >= len(self.fractions)

    def _next_stage(self, step: int) -> None:
        self._stage += 1
        self._start = None
        self._stage_step = step
        if self._stage < len(self.fractions):
            self._limit_w = self.cap.set_fraction(self.fractions[self._stage])
        else:
            self._finish()

    def on_step(self, step: int) -> None:
        """Called after each training step (``step`` counts from 0 over the run)."""
        if self.done:
            return
        if step + 1 >= self.steps_available:  # the first epoch is over: keep what it showed
            self._close_window(step)
            self._finish()
            return
        if self._start is None:
            if step + 1 - self._stage_step >= self.settle_steps:
                self._edge()
                self._start = (step, self.clock(), self.energy_j())
            return
        steps = step - self._start[0]
        if steps >= self.min_steps and self.clock() - self._start[1] >= self.min_seconds:
            self._close_window(step)
            self._next_stage(step + 1)

    def _close_window(self, step: int) -> None:
        if self._start is None or step <= self._start[0] or self._stage >= len(self.fractions):
            return
        first, t0, e0 = self._start
        self._edge()
        self.windows.append(LimitWindow(self.fractions[self._stage], self._limit_w,
                                        step - first, self.clock() - t0, self.energy_j() - e0))
        self._start = None

    def _edge(self) -> None:
        if self.sync is not None:
            self.sync()

    def _finish(self) -> None:
        """Keep the best limit measured (the default when fewer than two were)."""
        self._stage = len(self.fractions)
        if len(self.windows) >= 2:
            self.chosen = choose(self.windows, self.cap.request.max_slowdown)
        elif self.windows:
            self.chosen = self.windows[0]
        fraction = self.chosen.fraction if self.chosen is not None else self.fractions[0]
        self.cap.set_fraction(fraction)
        self.cap.auto_profile = self.record()

    def record(self) -> dict[str, Any]:
        return {"fractions": self.fractions, "windows": [asdict(w) for w in self.windows],
                "chosen_fraction": None if self.chosen is None else self.chosen.fraction,
                "chosen_w": None if self.chosen is None else self.chosen.limit_w,
                "max_slowdown": self.cap.request.max_slowdown}
