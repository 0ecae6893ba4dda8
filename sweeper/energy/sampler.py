"""Background energy sampling with exact per-phase readings.

A daemon thread polls every meter at ``sample_hz`` for the power time series. Phase
boundaries do not use those samples: they take a synchronous reading of the cumulative
counters under the same lock, so a phase's energy is the difference of two exact readings and
does not depend on the sampling rate (except for meters that integrate power themselves).

A meter that raises never stops the run: the failure becomes a warning in the summary and the
meter's last good reading is kept, so energy measured until then still counts.

Meters with an optional ``stats()`` (NVML: GPU utilisation and memory) are asked on the
background polls made while a phase is open, never at the exact boundary readings, so their
cost stays within the sampling budget; a phase shorter than the sampling period has no such
figures. The process's CPU utilisation comes from its CPU time at the phase boundaries, so it
exists for every phase whatever the meters are.

Meters whose counters refresh slowly (NVML, ~100 ms) also get ``watch()`` reads when they ask
for them (just before and after each refresh), are told where phases begin and end, and
each boundary of theirs is settled between the refreshes on either side once those are
seen (each refresh split where the work was: sweeper.energy.attribution). A phase is first
measured from its boundary reads and made final in place a little after it ends (at the
latest at ``stop()``).
Every phase carries an uncertainty in joules, and one whose mean power exceeds what its
devices can draw is flagged rather than passed on as a measurement.

This module is the sampler's public face; its parts: sweeper.energy.sampling_thread (the
thread and the refresh reads), sweeper.energy.phases (the phase API's objects),
sweeper.energy.settling (boundaries and settling), sweeper.energy.phase_stats (stats()).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from sweeper.energy.boundary import Boundary
from sweeper.energy.labels import describe_meters, source_label
from sweeper.energy.phase_stats import MeterStats
from sweeper.energy.phases import EnergyCheckpoint, OpenPhase, PhaseHandle
from sweeper.energy.reading import MeterReadings
from sweeper.energy.sampling_thread import SamplingThread, wait_for_refreshes, watch
from sweeper.energy.series import PowerSeries, next_poll_s
from sweeper.energy.settling import Settling
from sweeper.energy.types import DomainReading, EnergySummary, Meter, PhaseEnergy, Sample
from sweeper.energy.utilisation import ProcessCpu

__all__ = ["EnergyCheckpoint", "EnergySampler", "PhaseHandle"]


class EnergySampler:
    """Polls meters on a background thread and measures phases exactly at their boundaries.

    ``meters`` is any iterable of meters (a ``MeterSet`` from ``open_meters`` works; its notes
    go into the summary's hardware description). The sampler does not close the meters.
    ``on_samples`` runs on the sampler thread with batches of ``flush_every`` polls (one
    Sample per domain per poll) and once more at ``stop()``; keep it quick.
    ``background=False`` starts no thread: the caller drives polls with ``tick()`` (a
    simulated clock in tests and benchmarks; then ``stop()`` does not wait for refreshes).
    """

    def __init__(
        self,
        meters: Iterable[Meter],
        sample_hz: float = 10.0,
        on_samples: Callable[[list[Sample]], None] | None = None,
        flush_every: int = 50,
        *,
        clock: Callable[[], float] = time.perf_counter,
        background: bool = True,
    ) -> None:
        if not (sample_hz > 0 and math.isfinite(sample_hz)):
            raise ValueError(f"sample_hz must be a positive number, got {sample_hz}")
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self._meters: list[Meter] = list(meters)
        if not self._meters:
            raise ValueError("EnergySampler needs at least one meter")
        self._stats = MeterStats(self._meters)
        self._watchers: list[Meter] = [
            m for m in self._meters
            if callable(getattr(m, "watch", None)) and callable(getattr(m, "next_read_s", None))
        ]
        self._notes: list[str] = list(getattr(meters, "notes", []) or [])
        self.sample_hz = float(sample_hz)
        self.flush_every = flush_every
        self._clock = clock
        self._background = background  # False: the caller drives polls with tick()

        self._lock = threading.Lock()
        self._thread = SamplingThread(self.tick, clock) if background else None
        self._started = False
        self._summary: EnergySummary | None = None

        self._readings = MeterReadings(self._meters, clock)
        self._extra_warnings: list[str] = []
        self._series = PowerSeries(self.sample_hz, on_samples)
        self._hardware: dict[str, str] = {}
        self._cpu = ProcessCpu(clock)

        self._open_phase: OpenPhase | None = None
        self.phases: list[PhaseEnergy] = []
        self._max_power: dict[str, tuple[float, str]] = {}
        self._run_start: Boundary | None = None
        self._settling = Settling(self._meters, self._readings, self._watchers, self._max_power)
        self._next_poll_s = 0.0

    @property
    def _t0(self) -> float:
        """Clock time of the baseline reading: every t_s counts from it."""
        return self._readings.t0

    # ----------------------------------------------------------------- polls

    def _poll_locked(self, context: str) -> tuple[float, dict[str, DomainReading]]:
        """A background sample of every domain (sweeper.energy.series)."""
        t_s, values, stale = self._readings.read(context)
        self._series.add(t_s, values, stale)
        return t_s, values

    def _flush(self) -> None:
        """Hand buffered samples to on_samples, outside the lock so phases never wait on it."""
        with self._lock:
            batch = self._series.take()
        self._series.deliver(batch)

    def tick(self) -> float:
        """Do what is due now: the background poll at ``sample_hz``, the reads meters asked
        for to timestamp refreshes, settling boundaries. Returns when to tick next.

        The background thread calls it; with ``background=False`` the caller does (tests and
        benchmarks on a simulated clock)."""
        now = self._clock()
        full = False
        with self._lock:
            if now >= self._next_poll_s:
                self._next_poll_s = next_poll_s(self._next_poll_s, now, 1.0 / self.sample_hz)
                self._poll_locked("background")
                if self._open_phase is not None:  # stats only on background polls
                    self._stats.poll(self._open_phase.util)
                full = self._series.buffered_polls >= self.flush_every
            wake_s = watch(self._watchers, now, self._clock)
            self._settling.settle(final=False)
        if full:
            self._flush()
        return min(self._next_poll_s, wake_s)

    # ----------------------------------------------------------------- public API

    def start(self) -> EnergySampler:
        """Take the baseline reading and start the background thread."""
        if self._started:
            raise RuntimeError("EnergySampler.start() called twice")
        self._started = True
        self._hardware = describe_meters(self._meters, self._extra_warnings)
        if self._notes:
            self._hardware["meter_selection"] = "; ".join(self._notes)
        for meter in self._meters:
            fn = getattr(meter, "max_power_w", None)
            if fn is not None:
                try:
                    self._max_power.update(fn())
                except Exception as e:
                    self._extra_warnings.append(f"{meter.source} max_power_w() failed: {e}")
        # Start the thread before the baseline: Thread.start() can take milliseconds on a busy
        # machine, and that time would otherwise count in the run but in no phase.
        if self._thread is not None:
            self._thread.start()
        with self._lock:
            self._readings.t0 = self._clock()
            self._next_poll_s = self._t0 + 1.0 / self.sample_hz
            _, self._run_start = self._settling.boundary("start")
        if self._thread is not None:
            self._thread.release()
        return self

    def _require_running(self) -> None:
        if not self._started:
            raise RuntimeError("EnergySampler is not started; call start() first")
        if self._summary is not None:
            raise RuntimeError("EnergySampler is stopped")

    def begin_phase(self, kind: str, index: int = 0) -> None:
        """Open a phase at an exact reading; phases do not nest."""
        self._require_running()
        with self._lock:
            if self._open_phase is not None:
                p = self._open_phase
                raise RuntimeError(f"phase {p.kind}[{p.index}] is still open; end it first")
            cpu_mark = self._cpu.mark()
            t_s, boundary = self._settling.boundary(f"begin {kind}[{index}]", "begin")
            self._open_phase = OpenPhase(kind, index, t_s, boundary, cpu_mark)

    def end_phase(self) -> PhaseEnergy:
        """Close the open phase at a reading and return its energy: final at once for meters
        that need no refresh after the boundary, else filled in place a little later."""
        self._require_running()
        return self._end_phase()

    def _end_phase(self) -> PhaseEnergy:
        with self._lock:
            p = self._open_phase
            if p is None:
                raise RuntimeError("no phase is open")
            t_s, end = self._settling.boundary(f"end {p.kind}[{p.index}]", "end")
            self._open_phase = None
            cpu_pct = self._cpu.util_pct(p.cpu_mark)
            sources = {d: self._readings.sources[d] for d in end.read_j}
            result = p.closed(t_s, sources, cpu_pct)
            self._settling.close(result, p.start, end)
            self.phases.append(result)
        return result

    @contextlib.contextmanager
    def phase(self, kind: str, index: int = 0) -> Iterator[PhaseHandle]:
        """``with sampler.phase("train", epoch) as h: ...``; then ``h.result``.

        The phase is closed (and measured) even if the block raises.
        """
        handle = PhaseHandle(kind, index)
        self.begin_phase(kind, index)
        try:
            yield handle
        finally:
            handle.result = self.end_phase()

    def checkpoint(self) -> EnergyCheckpoint:
        """Energy since start at this instant, to be settled like a phase boundary; its
        ``energy_j`` is the read value until then (``energy_so_far_j`` for a read alone)."""
        self._require_running()
        with self._lock:
            _, boundary = self._settling.boundary("checkpoint")
            self._settling.checkpoints.append(boundary)
        return EnergyCheckpoint(self._checkpoint_energy_j, boundary)

    def _checkpoint_energy_j(self, b: Boundary) -> float:
        with self._lock:
            running = self._summary is None and self._started
            return self._settling.checkpoint_energy_j(b, running)

    def energy_so_far_j(self) -> float:
        """Exact energy since start, all domains, read now (for forecasting a run's total)."""
        self._require_running()
        with self._lock:
            _, values, _ = self._readings.read("energy_so_far")
        return sum(r.energy_j for r in values.values())

    @property
    def thread_cpu_s(self) -> float:
        """CPU seconds the background thread has used, as it measured itself (overhead check)."""
        return self._thread.cpu_s if self._thread is not None else 0.0

    @property
    def warnings(self) -> list[str]:
        """Problems so far: failed meter reads, stats() and on_samples errors."""
        return [*self._extra_warnings, *self._readings.warnings(), *self._stats.warnings(),
                *self._series.warnings()]

    def stop(self) -> EnergySummary:
        """Stop the thread, take a final sample, flush, and summarise. Idempotent."""
        if self._summary is not None:
            return self._summary
        if not self._started:
            raise RuntimeError("EnergySampler is not started; call start() first")
        if self._thread is not None:
            self._thread.stop()
        if self._open_phase is not None:
            p = self._open_phase
            self._extra_warnings.append(f"phase {p.kind}[{p.index}] was still open at stop()")
            self._end_phase()
        with self._lock:
            t_s, values = self._poll_locked("stop")
            end = Boundary(self._t0 + t_s, {d: r.energy_j for d, r in values.items()})
        if self._background:  # not with a simulated clock
            wait_for_refreshes(self._watchers, self._clock, lambda: self._settle_step(end))
        if self._watchers:  # what they learned since start, e.g. NVML's refresh period
            self._hardware.update(describe_meters(self._watchers, self._extra_warnings))
        with self._lock:
            start = self._run_start or Boundary(self._t0, {})
            by_domain, unc = self._settling.finish(start, end, t_s)
        self._flush()
        energy_j = sum(by_domain.values())
        self._summary = EnergySummary(
            energy_j=energy_j,
            duration_s=t_s,
            by_domain=by_domain,
            source=source_label(self._readings.sources[d] for d in by_domain),
            mean_power_w=energy_j / t_s if t_s > 0 else None,
            peak_power_w=self._series.peak_power_w,
            warnings=self.warnings,
            hardware=dict(self._hardware),
            energy_uncertainty_j=sum(unc.values()),
            uncertainty_by_domain=unc,
        )
        return self._summary

    def settle_ended(self) -> None:
        """Wait until every phase ended so far is final (at most the watchers' settle_s:
        a few refreshes of a slow counter; no wait without one), so a decision taken on
        their figures (the search's inference gate) reads the settled ones, not their
        boundary reads."""
        if self._background and self._watchers:
            wait_for_refreshes(self._watchers, self._clock, lambda: self._settle_step(None))

    def _settle_step(self, end: Boundary | None) -> tuple[bool, float]:
        """One step of a wait for phases to settle (and, at stop, the run's ``end``):
        settle what can be; (all settled, when to wake)."""
        with self._lock:
            self._settling.settle(final=False)
            done = not self._settling.pending and (
                end is None or self._settling.bounds.settle(end, final=False))
            return done, watch(self._watchers, self._clock(), self._clock)

    def __enter__(self) -> EnergySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
