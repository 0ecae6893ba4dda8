"""The sampler's power time series: background polls turned into samples, handed on in
batches.

Phase energies never come from here (they are differences of exact boundary readings);
this is the trace for plots and the peak power. Kept apart from the sampler so that the
sampler is about when to read and what a phase measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from sweeper.energy.reading import Failures
from sweeper.energy.types import DomainReading, Sample

log = logging.getLogger(__name__)


def next_poll_s(scheduled_s: float, now_s: float, period_s: float) -> float:
    """When to poll after the poll scheduled at ``scheduled_s`` ran at ``now_s``.

    Polls keep a fixed rate, but a late poll (loaded machine, slow meter) never brings the
    next one within half a period: that would burst after a suspend, and a rate over such a
    sliver of time is mostly counter resolution, so the poll would carry no power.
    """
    next_s = scheduled_s + period_s
    if next_s - now_s < 0.5 * period_s:
        next_s = now_s + period_s
    return next_s


class PowerSeries:
    """Samples of every domain at each background poll, with power from the meter or from
    energy / dt; buffered until ``take`` and delivered by ``deliver`` (outside any lock)."""

    def __init__(
        self, sample_hz: float, on_samples: Callable[[list[Sample]], None] | None = None
    ) -> None:
        self.sample_hz = sample_hz
        self.on_samples = on_samples
        self.peak_power_w: float | None = None
        self.polls = 0
        self.buffered_polls = 0
        self._prev: dict[str, tuple[float, float]] = {}  # domain -> (t_s, energy_j)
        self._buffer: list[Sample] = []
        self._failures = Failures()

    def add(self, t_s: float, values: dict[str, DomainReading], stale: Collection[str]) -> None:
        """One poll. A rate over a much shorter interval than the sampling period (the poll at
        stop, right after a background one) is mostly the meter's resolution: a CPU-time
        tick over a few ms reads as hundreds of watts. Such a sample keeps its energy but
        gets no power, and the next rate is taken from the last full interval."""
        min_dt_s = 0.5 / self.sample_hz
        total_w: float | None = None
        for domain, r in values.items():
            prev_t, prev_e = self._prev.get(domain, (0.0, 0.0))
            power_w = None if domain in stale else r.power_w
            if domain not in stale and power_w is None:
                if t_s - prev_t >= min_dt_s:
                    power_w = (r.energy_j - prev_e) / (t_s - prev_t)
                    self._prev[domain] = (t_s, r.energy_j)
            else:
                self._prev[domain] = (t_s, r.energy_j)
            if power_w is not None:
                total_w = (total_w or 0.0) + power_w
            self._buffer.append(Sample(t_s, domain, r.source, power_w, r.energy_j))
        if total_w is not None:
            self.peak_power_w = (
                total_w if self.peak_power_w is None else max(self.peak_power_w, total_w)
            )
        self.polls += 1
        self.buffered_polls += 1

    def take(self) -> list[Sample]:
        """The buffered samples (call under the sampler's lock; deliver them outside it)."""
        batch, self._buffer = self._buffer, []
        self.buffered_polls = 0
        return batch

    def deliver(self, batch: list[Sample]) -> None:
        """Hand a batch to on_samples; a failure is counted and said once, never raised."""
        if not batch or self.on_samples is None:
            return
        try:
            self.on_samples(batch)
        except Exception as e:  # a storage hiccup must not end the measurement
            f = self._failures
            f.count += 1
            if f.count == 1:
                f.first = f"{type(e).__name__}: {e}"
                log.warning("on_samples failed (%s); those samples are dropped", f.first)

    def warnings(self) -> list[str]:
        f = self._failures
        if not f.count:
            return []
        return [f"on_samples failed {f.count} time(s), first: {f.first}; "
                "those sample batches were dropped"]
