"""How busy the machine was while a run was measured (CPU used by other processes, load).

Energy read from RAPL covers the whole package, and the estimate meter's CPU time grows
when threads wait on a contended machine, so a run measured beside other work is not
comparable with one measured alone. The probe is meter-shaped (``read()`` returns no
domains) so the sampler asks its ``stats()`` on every background poll while a phase is
open, averaging the ``*_pct`` figure over the phase and keeping the peak load average.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import psutil

from sweeper.energy.process_tree import ProcessTree
from sweeper.energy.types import DomainReading

OTHER_CPU_KEY = "machine.other_cpu_pct"
LOAD_KEY = "machine.load_avg_1m"
CHILDREN_REFRESH_S = 1.0


@dataclass(frozen=True)
class Contention:
    """The machine's load over a stretch of time."""

    other_cpu_pct: float | None  # CPU used by other processes, % of all logical cores
    load_avg_1m: float | None  # peak 1-minute load average seen
    cores: int


def _busy_s() -> float:
    """Busy CPU seconds of the whole machine (all cores), from /proc/stat via psutil."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


class ContentionProbe:
    """CPU used by processes other than this one (and its children), and the load average."""

    source = "machine"

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        machine_busy_s: Callable[[], float] = _busy_s,
        own_cpu_s: Callable[[], float] | None = None,
    ) -> None:
        """The counters are injectable so tests can drive them; by default the machine's
        busy CPU seconds and this process tree's CPU seconds."""
        self._clock = clock
        self._machine_busy_s = machine_busy_s
        self._own_cpu_s = own_cpu_s or self._tree_cpu_s
        self._proc = psutil.Process()
        self._descendants = ProcessTree(self._proc, clock, CHILDREN_REFRESH_S)
        self.cores = psutil.cpu_count(logical=True) or 1
        self._lock = threading.Lock()
        self._start = self._last = self._mark()
        self._peak_load: float | None = None

    def _mark(self) -> tuple[float, float, float]:
        return self._clock(), self._machine_busy_s(), self._own_cpu_s()

    def _tree_cpu_s(self) -> float:
        """CPU seconds of this process, its reaped children and its live descendants."""
        t = self._proc.cpu_times()
        own = t.user + t.system + t.children_user + t.children_system
        for child in self._descendants.children():
            try:
                c = child.cpu_times()
            except psutil.Error:
                self._descendants.forget(child.pid)
                continue
            own += c.user + c.system
        return own

    def _other_pct(self, a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
        wall = b[0] - a[0]
        if wall <= 0:
            return 0.0
        other = (b[1] - a[1]) - (b[2] - a[2])
        return min(100.0, max(0.0, 100.0 * other / (wall * self.cores)))

    def _load(self) -> float | None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            return None
        self._peak_load = load if self._peak_load is None else max(self._peak_load, load)
        return load

    def stats(self) -> dict[str, float]:
        """Other processes' CPU since the previous call, and the load average now."""
        with self._lock:
            now = self._mark()
            out = {OTHER_CPU_KEY: self._other_pct(self._last, now)}
            self._last = now
            load = self._load()
        if load is not None:
            out[LOAD_KEY] = load
        return out

    def total(self) -> Contention:
        """Since the probe was made: other processes' CPU share and the peak load average."""
        with self._lock:
            now = self._mark()
            self._load()
            return Contention(self._other_pct(self._start, now), self._peak_load, self.cores)

    # Meter shape, so the sampler polls stats(): no energy domains of its own.
    def read(self) -> list[DomainReading]:
        return []

    def describe(self) -> dict[str, str]:
        return {"logical_cores": str(self.cores)}

    def close(self) -> None:
        """Nothing to release."""


def busy_warning(c: Contention, threshold_pct: float) -> str | None:
    """The run's measurement warning when other processes used more than threshold_pct."""
    if c.other_cpu_pct is None or c.other_cpu_pct <= threshold_pct:
        return None
    load = "" if c.load_avg_1m is None else f", load average up to {c.load_avg_1m:.1f}"
    return (
        f"busy machine: other processes used {c.other_cpu_pct:.0f}% of the {c.cores} "
        f"logical cores while this run was measured{load} (threshold "
        f"energy.busy_other_cpu_pct={threshold_pct:g}); package-wide and CPU-time energy "
        "figures are inflated by contention, so compare them with care"
    )


def shared_gpu_warning(utilisations: Iterable[Mapping[str, float] | None]) -> str | None:
    """A warning when a measured GPU ran other processes' work during the run's phases
    (``gpu:N.other_processes`` in their utilisation): NVML's counter is the whole GPU's."""
    peak: dict[str, float] = {}
    for utilisation in utilisations:
        for key, value in (utilisation or {}).items():
            if key.endswith(".other_processes") and value > peak.get(key, 0.0):
                peak[key] = value
    if not peak:
        return None
    where = ", ".join(f"{key.split('.')[0]} with up to {value:.0f}"
                      for key, value in sorted(peak.items()))
    return (f"GPU shared with other processes ({where} besides this run): NVML measures the "
            "whole GPU, so its energy includes theirs")
