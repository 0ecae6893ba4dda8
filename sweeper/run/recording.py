"""Writing one run as it happens: its phases and samples, the phase a failure cut
short, its heartbeats and the closing update of its row.

Training runs and forecast-only runs share this, so both record interrupts, failures and
forecasts the same way. Every write goes through one WriteBehind, so a store outage
delays them (in order, in memory) instead of losing them or stopping the run.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sweeper import energy
from sweeper.energy.resolution import low_resolution_reason
from sweeper.errors import StoreUnavailable
from sweeper.predict.forecast import Forecast
from sweeper.store import Phase, PhaseDomainEnergy, Store
from sweeper.store import runs as store_runs
from sweeper.store.outage import WriteBehind
from sweeper.store.schema import PHASE_KINDS, utcnow
from sweeper.store.spool import Spool

log = logging.getLogger(__name__)

# (type name, message) of what ended a run early, or None.
RunError = tuple[str, str] | None


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM (for example a Slurm pre-emption) turned into an interrupt."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Pre-emption sends SIGTERM: treat it like Ctrl-C so the run is recorded first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise RunInterrupted(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them as before.

    A signal landing inside a write would cut it between the run's in-memory record and
    the database (a phase counted in E_tr but never stored); held, the write completes and
    the interrupt follows a moment later.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


class Recorder:
    """Writes phases, samples and heartbeats of one run as they happen, and its end.

    A phase measured by a slowly refreshing meter (NVML) is final only once the refresh
    after its end is seen: it counts at once (``phases``) and is written when final, at the
    next ``phase()`` call or at ``flush()`` (after the sampler stopped, every phase is).
    """

    def __init__(
        self, store: Store, run_id: int, keep_samples: bool,
        resolution: tuple[float, str] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.keep_samples = keep_samples
        self.resolution = resolution  # (refresh period s, source) of the slowest meter
        self.phases: list[energy.PhaseEnergy] = []
        self._unwritten: list[tuple[energy.PhaseEnergy, dict[str, Any]]] = []
        self.writes = WriteBehind(
            store, f"run {run_id}",
            after=f"What was stored before is kept; run {run_id} stays 'running' until the "
            "next command of this sweep records it as interrupted, and running the same "
            "command again resumes the sweep.",
            spool=Spool(store.display_url, run_id),
        )

    def low_resolution(self, result: energy.PhaseEnergy) -> str | None:
        """Why the phase is too short for the slowest meter, or None."""
        if self.resolution is None:
            return None
        return low_resolution_reason(result.duration_s, *self.resolution)

    def samples(self, batch: list[energy.Sample]) -> None:
        """On the sampler thread."""
        if not self.keep_samples:
            return
        rows = [
            {
                "run_id": self.run_id, "t_s": s.t_s, "domain": s.domain, "source": s.source,
                "power_w": s.power_w, "energy_j": s.energy_j,
            }
            for s in batch
        ]
        with contextlib.suppress(StoreUnavailable):  # the run's own thread reports it, once
            self.writes.submit("store power samples", store_runs.add_samples, rows)

    def beat(self) -> None:
        """On the heartbeat thread: mark the row alive (only the latest beat is queued)."""
        self.writes.submit_beat("record a heartbeat", store_runs.beat, self.run_id)

    def phase(self, result: energy.PhaseEnergy, **stats: Any) -> None:
        low_resolution = self.low_resolution(result)
        if low_resolution:  # shorter than a few refreshes of the slowest meter
            stats = {**stats, "low_resolution": low_resolution}
        with interrupts_held():  # counted and queued together, or neither
            self.phases.append(result)
            self._unwritten.append((result, stats))
        self.flush(final_only=True)

    def flush(self, final_only: bool = False) -> None:
        """Write the phases not yet stored, in order; ``final_only`` stops at the first one
        still waiting for a refresh."""
        while self._unwritten:
            result, stats = self._unwritten[0]
            if final_only and not result.final:
                return
            with interrupts_held():  # stored (or queued) and dequeued together, or neither
                self.writes.submit(
                    "store a phase", store_runs.add_phase, *phase_rows(self.run_id, result, stats)
                )
                self._unwritten.pop(0)

    def record_failure_now(self, error_type: str, message: str) -> bool:
        """Mark the run failed in one try, without waiting or queueing (its disk is full:
        the row may not take even this). True if it did."""
        try:
            store_runs.update_run.once(
                self.store, False, self.run_id, status="failed", error_type=error_type,
                error_message=message[:4000], ended_at=utcnow(),
            )
        except Exception:  # the next command reclaims the run instead
            return False
        return True

    def energy_of(self, kind: str) -> float:
        return sum(p.energy_j for p in self.phases if p.kind == kind)

    def uncertainty_of(self, kind: str) -> float:
        """As the run's row will state it (a phase not yet settled: its boundary reads')."""
        return summed_uncertainty_j(self.phases, kind)

    def duration_of(self, kind: str) -> float:
        return sum(p.duration_s for p in self.phases if p.kind == kind)

    def close(
        self, values: dict[str, Any], status: str, error: RunError, started_s: float
    ) -> None:
        """The run's final status, timing and error, with every column gathered in values;
        returns once everything the run wrote is stored (after an outage, once the store
        is back), or raises StoreUnavailable."""
        values.update(status=status, ended_at=utcnow(), duration_s=time.perf_counter() - started_s)
        # No error clears one set while it ran (a run wrongly judged vanished that went on).
        values.update(
            error_type=None if error is None else error[0],
            error_message=None if error is None else error[1][:4000],
        )
        with interrupts_held():  # a second Ctrl-C must not leave the row 'running'
            self.writes.submit("record how the run ended", store_runs.update_run, self.run_id,
                               **values)
        self.writes.flush()


def phase_rows(
    run_id: int, result: energy.PhaseEnergy, stats: dict[str, Any]
) -> tuple[Phase, list[PhaseDomainEnergy]]:
    """A phase's row and its per-domain rows. A flagged phase (its mean power is above what
    the devices can draw) keeps its figure out: energy NULL, the reason in energy_flag."""
    if result.utilisation:  # passing None would store JSON 'null' rather than SQL NULL
        stats = {"utilisation": dict(result.utilisation), **stats}
    measured = result.flag is None
    row = Phase(
        run_id=run_id, kind=result.kind, index=result.index, start_s=result.start_s,
        duration_s=result.duration_s, energy_j=result.energy_j if measured else None,
        mean_power_w=result.mean_power_w if measured else None, meter_source=result.source,
        energy_uncertainty_j=result.energy_uncertainty_j, energy_flag=result.flag, **stats,
    )
    domains = [
        PhaseDomainEnergy(
            domain=d, source=result.sources.get(d, result.source), energy_j=e,
            energy_uncertainty_j=result.uncertainty_by_domain.get(d),
        )
        for d, e in result.by_domain.items()
    ] if measured else []
    return row, domains


def summed_uncertainty_j(phases: list[energy.PhaseEnergy], *kinds: str) -> float:
    """The uncertainty of the phases of these kinds together: their uncertainties added."""
    return sum(p.energy_uncertainty_j for p in phases if p.kind in kinds)


def uncertainty_columns(
    phases: list[energy.PhaseEnergy], summary: energy.EnergySummary | None
) -> dict[str, Any]:
    """Uncertainty of E_tr, evaluation, E_in (their phases' summed) and of the run's total,
    plus a warning naming any flagged phase (its figure still counts in the run's sums:
    a boundary's error moves energy between neighbouring phases, and cancels in a sum)."""
    def unc(*kinds: str) -> float:
        return summed_uncertainty_j(phases, *kinds)

    out: dict[str, Any] = {
        "energy_train_uncertainty_j": unc("train_epoch"),
        "energy_eval_uncertainty_j": unc("eval", "test"),
        "energy_inference_uncertainty_j": unc("inference"),
        "energy_total_uncertainty_j": (
            summary.energy_uncertainty_j if summary is not None else unc(*PHASE_KINDS)
        ),
    }
    flagged = [f"{p.kind}[{p.index}]: {p.flag}" for p in phases if p.flag]
    if flagged:
        out["flagged_phases"] = "phases not stored as measurements: " + "; ".join(flagged)
    return out


def energy_split(energy_of: Callable[[str], float]) -> dict[str, float]:
    """A run's E_tr, E_in and evaluation energy columns from its phases' energy by kind."""
    return {
        "energy_train_j": energy_of("train_epoch"),
        "energy_eval_j": energy_of("eval") + energy_of("test"),
        "energy_inference_j": energy_of("inference"),
    }


def record_cut_phases(recorder: Recorder, sampler: energy.EnergySampler) -> None:
    """After the sampler stopped: store the phase a failure or an interrupt cut short (the
    sampler closed and measured it, so its energy, a partial epoch being training energy,
    counts in the run's columns), and every phase still waiting to be written."""
    try:
        for result in sampler.phases[len(recorder.phases):]:
            recorder.phase(result)
        recorder.flush()
    except StoreUnavailable:
        raise  # the store is gone for good: reported once, by the run
    except Exception as exc:  # the run's own row matters more than this phase
        log.warning("could not record the unfinished phase: %s: %s", type(exc).__name__, exc)


def forecast_columns(forecast: Forecast) -> dict[str, Any]:
    return {
        "forecast_window": forecast.window,
        "forecast_steps": forecast.profiled_steps,
        "forecast_energy_train_j": forecast.energy_j,
        "forecast_energy_train_low_j": forecast.energy_low_j,
        "forecast_energy_train_high_j": forecast.energy_high_j,
        "forecast_duration_train_s": forecast.duration_s,
    }
