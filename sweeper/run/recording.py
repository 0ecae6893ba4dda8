"""Writing one run as it happens: its phases and samples, the phase a failure cut
short, and the closing update of its row.

Training runs and forecast-only runs share this, so both record interrupts, failures and
forecasts the same way.
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
from sweeper.predict.forecast import Forecast
from sweeper.store import Phase, PhaseDomainEnergy, Store
from sweeper.store import runs as store_runs
from sweeper.store.schema import utcnow

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
    """Writes phases and samples of one run as they happen."""

    def __init__(
        self, store: Store, run_id: int, keep_samples: bool,
        resolution: tuple[float, str] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.keep_samples = keep_samples
        self.resolution = resolution  # (refresh period s, source) of the slowest meter
        self.phases: list[energy.PhaseEnergy] = []

    def low_resolution(self, result: energy.PhaseEnergy) -> str | None:
        """Why the phase is too short for the slowest meter, or None."""
        if self.resolution is None:
            return None
        return low_resolution_reason(result.duration_s, *self.resolution)

    def samples(self, batch: list[energy.Sample]) -> None:
        if not self.keep_samples:
            return
        store_runs.add_samples(
            self.store,
            (
                {
                    "run_id": self.run_id, "t_s": s.t_s, "domain": s.domain, "source": s.source,
                    "power_w": s.power_w, "energy_j": s.energy_j,
                }
                for s in batch
            ),
        )

    def phase(self, result: energy.PhaseEnergy, **stats: Any) -> None:
        if result.utilisation:  # passing None would store JSON 'null' rather than SQL NULL
            stats = {"utilisation": dict(result.utilisation), **stats}
        row = Phase(
            run_id=self.run_id, kind=result.kind, index=result.index, start_s=result.start_s,
            duration_s=result.duration_s, energy_j=result.energy_j,
            mean_power_w=result.mean_power_w, meter_source=result.source,
            low_resolution=self.low_resolution(result), **stats,
        )
        domains = [
            PhaseDomainEnergy(domain=d, source=result.sources.get(d, result.source), energy_j=e)
            for d, e in result.by_domain.items()
        ]
        with interrupts_held():  # stored and counted together, or neither
            store_runs.add_phase(self.store, row, domains)
            self.phases.append(result)

    def energy_of(self, kind: str) -> float:
        return sum(p.energy_j for p in self.phases if p.kind == kind)

    def duration_of(self, kind: str) -> float:
        return sum(p.duration_s for p in self.phases if p.kind == kind)


def energy_split(energy_of: Callable[[str], float]) -> dict[str, float]:
    """A run's E_tr, E_in and evaluation energy columns from its phases' energy by kind."""
    return {
        "energy_train_j": energy_of("train_epoch"),
        "energy_eval_j": energy_of("eval") + energy_of("test"),
        "energy_inference_j": energy_of("inference"),
    }


def record_cut_phases(recorder: Recorder, sampler: energy.EnergySampler) -> None:
    """Store the phase a failure or an interrupt cut short: the sampler closed and measured
    it, so its energy (a partial epoch is training energy) counts in the run's columns."""
    try:
        for result in sampler.phases[len(recorder.phases):]:
            recorder.phase(result)
    except Exception as exc:  # the run's own row matters more than this phase
        log.warning("could not record the unfinished phase: %s: %s", type(exc).__name__, exc)


def forecast_columns(forecast: Forecast) -> dict[str, Any]:
    return {
        "forecast_window": forecast.window,
        "forecast_steps": forecast.profiled_steps,
        "forecast_energy_train_j": forecast.energy_j,
        "forecast_duration_train_s": forecast.duration_s,
    }


def close_run(
    store: Store,
    run_id: int,
    values: dict[str, Any],
    status: str,
    error: RunError,
    started_s: float,
) -> None:
    """The run's final status, timing and error, with every column gathered in values."""
    values.update(status=status, ended_at=utcnow(), duration_s=time.perf_counter() - started_s)
    # No error clears one set while it ran (a run wrongly judged vanished that went on).
    values.update(
        error_type=None if error is None else error[0],
        error_message=None if error is None else error[1][:4000],
    )
    with interrupts_held():  # a second Ctrl-C must not leave the row 'running'
        store_runs.update_run(store, run_id, **values)
