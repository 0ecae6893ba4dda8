"""One reading of every meter, relative to each domain's first reading.

A meter that raises never stops the run: its last good reading is kept, the domains it
reads are marked stale for that reading, and the failure becomes a warning (logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sweeper.energy.types import DomainReading, Meter

log = logging.getLogger("sweeper.energy.sampler")  # the logger these warnings always had


@dataclass
class Failures:
    """How often something failed, and the first failure in words."""

    count: int = 0
    first: str = ""


class MeterReadings:
    """The meters' readings as the sampler uses them, with what it learned about each
    domain: its baseline energy, its source and which meter reads it."""

    def __init__(self, meters: list[Meter], clock: Callable[[], float]) -> None:
        self.meters = meters
        self.clock = clock
        self.t0 = 0.0  # clock time of the baseline reading, set by the sampler's start()
        self.last_good: dict[int, list[DomainReading]] = {}
        self.baseline_j: dict[str, float] = {}
        self.sources: dict[str, str] = {}
        self.domain_meter: dict[str, int] = {}
        self.failures: dict[int, Failures] = {}

    def read(self, context: str) -> tuple[float, dict[str, DomainReading], set[str]]:
        """One reading of every meter (the caller serialises reads).

        Returns the time since start, each domain's reading with energy relative to the start,
        and the domains whose meter failed this time (their values are the last good ones).
        """
        t_before = self.clock()
        values: dict[str, DomainReading] = {}
        stale: set[str] = set()
        for i, meter in enumerate(self.meters):
            try:
                readings = meter.read()
                self.last_good[i] = readings
                failed = False
            except Exception as e:  # any meter error: keep going on the last good value
                self._record_failure(i, meter, context, t_before - self.t0, e)
                readings = self.last_good.get(i, [])
                failed = True
            for r in readings:
                base = self.baseline_j.setdefault(r.domain, r.energy_j)
                self.sources[r.domain] = r.source
                self.domain_meter[r.domain] = i
                values[r.domain] = DomainReading(r.domain, r.source, r.energy_j - base, r.power_w)
                if failed:
                    stale.add(r.domain)
        t_s = 0.5 * (t_before + self.clock()) - self.t0
        return t_s, values, stale

    def _record_failure(self, i: int, meter: Meter, context: str, t_s: float, e: Exception) -> None:
        f = self.failures.setdefault(i, Failures())
        f.count += 1
        if f.count == 1:
            f.first = f"during {context} read at t={t_s:.2f}s: {type(e).__name__}: {e}"
            log.warning("%s meter failed %s; keeping its last good value", meter.source, f.first)

    def warnings(self) -> list[str]:
        """One line per meter whose reads failed."""
        out = []
        for i, f in sorted(self.failures.items()):
            src = self.meters[i].source
            kept = "its last good value was kept" if i in self.last_good else "it never read"
            out.append(
                f"{src} meter failed {f.count} read(s), first {f.first}; {kept}, so energy "
                f"after the failure may be missing"
            )
        return out
