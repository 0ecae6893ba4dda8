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
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sweeper.energy.boundary import Boundary, BoundaryFigures
from sweeper.energy.labels import describe_meters, source_label
from sweeper.energy.reading import Failures, MeterReadings
from sweeper.energy.series import PowerSeries, next_poll_s
from sweeper.energy.types import DomainReading, EnergySummary, Meter, PhaseEnergy, Sample
from sweeper.energy.utilisation import ProcessCpu, Utilisation

log = logging.getLogger(__name__)


@dataclass
class PhaseHandle:
    """What ``EnergySampler.phase`` yields; ``result`` is filled in when the block exits."""

    kind: str
    index: int
    result: PhaseEnergy | None = None


@dataclass
class EnergyCheckpoint:
    """Energy since the sampler started, all domains, at one instant inside the work (a
    profile window's edge): the read value at first, settled between the refreshes around
    it once they are seen, as a phase boundary is (final at ``stop()`` at the latest). No
    phase begins or ends there, so its refresh is split as the phases around it say."""

    _sampler: EnergySampler
    boundary: Boundary

    @property
    def energy_j(self) -> float:
        return self._sampler._checkpoint_energy_j(self.boundary)


@dataclass
class _OpenPhase:
    kind: str
    index: int
    t_s: float
    start: Boundary
    cpu_mark: tuple[float, float] | None = None  # (clock, process CPU seconds) at the start
    util: Utilisation = field(default_factory=Utilisation)


@dataclass
class _Pending:
    result: PhaseEnergy
    start: Boundary
    end: Boundary


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
        self._stats_meters: list[tuple[int, Callable[[], dict[str, float]]]] = [
            (i, m.stats) for i, m in enumerate(self._meters) if callable(getattr(m, "stats", None))
        ]
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
        self._stop_event = threading.Event()
        self._ready = threading.Event()  # set once the baseline reading exists
        self._thread: threading.Thread | None = None
        self._started = False
        self._summary: EnergySummary | None = None

        self._readings = MeterReadings(self._meters, clock)
        self._stats_failures: dict[int, Failures] = {}
        self._extra_warnings: list[str] = []
        self._series = PowerSeries(self.sample_hz, on_samples)
        self._hardware: dict[str, str] = {}
        self._thread_cpu_s = 0.0
        self._cpu = ProcessCpu(clock)

        self._open_phase: _OpenPhase | None = None
        self.phases: list[PhaseEnergy] = []
        self._pending: list[_Pending] = []
        self._checkpoints: list[Boundary] = []  # profile-window edges, settled by stop()
        self._max_power: dict[str, tuple[float, str]] = {}
        self._run_start: Boundary | None = None
        self._bounds = BoundaryFigures(
            self._meters, self._readings.domain_meter, self._readings.baseline_j, self._max_power
        )
        self._next_poll_s = 0.0

    @property
    def _t0(self) -> float:
        """Clock time of the baseline reading: every t_s counts from it."""
        return self._readings.t0

    # ----------------------------------------------------------------- readings

    def _poll_locked(self, context: str) -> tuple[float, dict[str, DomainReading]]:
        """A background sample of every domain (sweeper.energy.series)."""
        t_s, values, stale = self._readings.read(context)
        self._series.add(t_s, values, stale)
        return t_s, values

    def _poll_stats_locked(self) -> None:
        """Fold the meters' stats() into the open phase; only background polls call this."""
        p = self._open_phase
        if p is None:
            return
        for i, stats in self._stats_meters:
            try:
                p.util.add(stats())
            except Exception as e:  # utilisation is a side figure: never cost the energy
                f = self._stats_failures.setdefault(i, Failures())
                f.count += 1
                if f.count == 1:
                    f.first = f"{type(e).__name__}: {e}"
                    src = self._meters[i].source
                    log.warning("%s stats() failed (%s); utilisation may be missing", src, f.first)

    def _flush(self) -> None:
        """Hand buffered samples to on_samples, outside the lock so phases never wait on it."""
        with self._lock:
            batch = self._series.take()
        self._series.deliver(batch)

    def _run(self) -> None:
        self._ready.wait()
        while True:
            wake_s = self.tick()
            self._thread_cpu_s = time.thread_time()
            if self._stop_event.wait(max(0.0, wake_s - self._clock())):
                return

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
                self._poll_stats_locked()
                full = self._series.buffered_polls >= self.flush_every
            wake_s = self._watch_locked(now)
            self._settle_locked(final=False)
        if full:
            self._flush()
        return min(self._next_poll_s, wake_s)

    def _watch_locked(self, now: float) -> float:
        """Counter reads the meters asked for; returns the earliest next one (or +inf)."""
        wake_s = math.inf
        for meter in self._watchers:
            try:
                due = meter.next_read_s(now)  # type: ignore[attr-defined]
                if due is not None and due <= now:
                    meter.watch()  # type: ignore[attr-defined]
                    due = meter.next_read_s(self._clock())  # type: ignore[attr-defined]
            except Exception:  # a broken meter is reported by its full reads
                continue
            if due is not None:
                wake_s = min(wake_s, due)
        return wake_s

    # ----------------------------------------------------------------- boundaries

    def _boundary_locked(self, context: str, edge: str | None = None) -> tuple[float, Boundary]:
        """Read every meter at a boundary; ``edge`` ("begin" or "end" of a phase) is told to
        meters that attribute energy within a refresh by where the work is."""
        t_s, values, _ = self._readings.read(context)
        boundary = Boundary(self._t0 + t_s, {d: r.energy_j for d, r in values.items()})
        if edge is not None:
            for meter in self._watchers:
                mark = getattr(meter, "mark_boundary", None)
                if mark is not None:
                    mark(boundary.t_abs, edge)
        self._bounds.settle(boundary, final=False)
        return t_s, boundary

    def _settle_locked(self, final: bool) -> None:
        """Finish every pending phase whose boundaries are settled (all of them at final)."""
        while self._pending:
            p = self._pending[0]
            if not (self._bounds.settle(p.start, final) & self._bounds.settle(p.end, final)):
                return  # phases finish in order
            self._pending.pop(0)
            self._bounds.fill(p.result, p.start, p.end, final=True)

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
        if self._background:
            self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
            self._thread.start()
        with self._lock:
            self._readings.t0 = self._clock()
            self._next_poll_s = self._t0 + 1.0 / self.sample_hz
            _, self._run_start = self._boundary_locked("start")
        self._ready.set()
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
            t_s, boundary = self._boundary_locked(f"begin {kind}[{index}]", "begin")
            self._open_phase = _OpenPhase(kind, index, t_s, boundary, cpu_mark)

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
            t_s, end = self._boundary_locked(f"end {p.kind}[{p.index}]", "end")
            self._open_phase = None
            utilisation = p.util.result()
            cpu_pct = self._cpu.util_pct(p.cpu_mark)
            if cpu_pct is not None:
                utilisation["process.cpu_util_pct"] = cpu_pct
            sources = {d: self._readings.sources[d] for d in end.read_j}
            result = PhaseEnergy(
                kind=p.kind,
                index=p.index,
                start_s=p.t_s,
                duration_s=t_s - p.t_s,
                energy_j=0.0,
                sources=sources,
                source=source_label(sources.values()),
                utilisation=utilisation,
            )
            self._bounds.fill(result, p.start, end, final=False)  # from the reads, for now
            self._pending.append(_Pending(result, p.start, end))
            self._settle_locked(final=False)
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
            _, boundary = self._boundary_locked("checkpoint")
            self._checkpoints.append(boundary)
        return EnergyCheckpoint(self, boundary)

    def _checkpoint_energy_j(self, b: Boundary) -> float:
        with self._lock:
            if self._summary is None and self._started:
                self._bounds.settle(b, final=False)
            return sum(b.settled[d][0] if d in b.settled else read_j
                       for d, read_j in b.read_j.items())

    def energy_so_far_j(self) -> float:
        """Exact energy since start, all domains, read now (for forecasting a run's total)."""
        self._require_running()
        with self._lock:
            _, values, _ = self._readings.read("energy_so_far")
        return sum(r.energy_j for r in values.values())

    @property
    def thread_cpu_s(self) -> float:
        """CPU seconds the background thread has used, as it measured itself (overhead check)."""
        return self._thread_cpu_s

    @property
    def warnings(self) -> list[str]:
        """Problems so far: failed meter reads, stats() and on_samples errors."""
        out = list(self._extra_warnings)
        out += self._readings.warnings()
        for i, f in sorted(self._stats_failures.items()):
            out.append(
                f"{self._meters[i].source} stats() failed {f.count} time(s), first: {f.first}; "
                f"utilisation is missing from those polls (energy is unaffected)"
            )
        out += self._series.warnings()
        return out

    def stop(self) -> EnergySummary:
        """Stop the thread, take a final sample, flush, and summarise. Idempotent."""
        if self._summary is not None:
            return self._summary
        if not self._started:
            raise RuntimeError("EnergySampler is not started; call start() first")
        self._stop_event.set()
        self._ready.set()
        if self._thread is not None:
            self._thread.join()
        if self._open_phase is not None:
            p = self._open_phase
            self._extra_warnings.append(f"phase {p.kind}[{p.index}] was still open at stop()")
            self._end_phase()
        with self._lock:
            t_s, values = self._poll_locked("stop")
            end = Boundary(self._t0 + t_s, {d: r.energy_j for d, r in values.items()})
        self._wait_for_refreshes(end)
        if self._watchers:  # what they learned since start, e.g. NVML's refresh period
            self._hardware.update(describe_meters(self._watchers, self._extra_warnings))
        with self._lock:
            self._settle_locked(final=True)
            for checkpoint in self._checkpoints:
                self._bounds.settle(checkpoint, final=True)
            start = self._run_start or Boundary(self._t0, {})
            self._bounds.settle(start, final=True)
            self._bounds.settle(end, final=True)
            by_domain, unc, _ = self._bounds.figures(start, end, t_s, settled=True)
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

    def _wait_for_refreshes(self, end: Boundary) -> None:
        """At stop, keep watching slow counters until the refreshes after the last boundaries
        are seen: at most a few refresh periods, once per run (not with a simulated clock)."""
        if not self._background or not self._watchers:
            return
        settle_s = max(float(getattr(m, "settle_s", lambda: 0.0)()) for m in self._watchers)
        deadline = self._clock() + settle_s
        while True:
            with self._lock:
                self._settle_locked(final=False)
                done = not self._pending and self._bounds.settle(end, final=False)
                wake_s = self._watch_locked(self._clock())
            now = self._clock()
            if done or now >= deadline:
                return
            time.sleep(max(0.0, min(wake_s, deadline) - now))

    def __enter__(self) -> EnergySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
