"""Utilisation figures of a phase: the meters' stats() aggregated over the background polls
made while it was open, and the share of the machine's cores this process kept busy, from
its CPU time at the phase's boundaries (so every phase has it, whatever the meters are)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil


@dataclass
class Utilisation:
    """Running aggregate of stats() over a phase: mean of ``*_pct`` keys, max of the others
    (memory in use matters at its peak, since that is what decides whether a run fits)."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            v = float(value)
            if not math.isfinite(v):
                continue
            if key.endswith("_pct"):
                self.sums[key] = self.sums.get(key, 0.0) + v
                self.counts[key] = self.counts.get(key, 0) + 1
            else:
                self.peaks[key] = max(self.peaks.get(key, v), v)

    def result(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        out.update(self.peaks)
        return dict(sorted(out.items()))


class ProcessCpu:
    """This process's CPU time against a clock, read at phase boundaries."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._proc = psutil.Process()
        self._n_cores = psutil.cpu_count(logical=True) or 1

    def mark(self) -> tuple[float, float] | None:
        """(clock, CPU seconds of this process and its reaped children), or None if unreadable."""
        try:
            t = self._proc.cpu_times()
        except psutil.Error:
            return None
        return self._clock(), t.user + t.system + t.children_user + t.children_system

    def util_pct(self, start: tuple[float, float] | None) -> float | None:
        """Share of all logical cores the process kept busy since ``start``, in percent."""
        end = self.mark()
        if start is None or end is None or end[0] <= start[0]:
            return None
        pct = 100.0 * (end[1] - start[1]) / ((end[0] - start[0]) * self._n_cores)
        return min(100.0, max(0.0, pct))
