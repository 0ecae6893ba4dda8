"""The one skeleton every measured run goes through, whatever its mode.

A run row is inserted, the background sampler measures the mode's work inside SIGTERM
handling and a heartbeat, and whatever ends the work (success, the energy rule, a failure,
Ctrl-C or SIGTERM) is classified and recorded. Failures are kept in the row and do not
escape, so a multirun goes on with its next job; an interrupt is recorded and then
re-raised by close(), so the process stops promptly. A store outage only delays the
writes (sweeper.store.outage); one that outlasts storage.outage_s raises StoreUnavailable
at the run's next write, and the run is left for the next command to reclaim.

    run = MeasuredRun(prepared, ok_status="completed")
    run.measure(lambda: body(run.sampler, run.recorder))
    run.values.update(columns...)
    run.close()            # writes the row; re-raises a Ctrl-C
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sweeper import energy
from sweeper.config.launch import launch
from sweeper.energy.contention import ContentionProbe, busy_warning, shared_gpu_warning
from sweeper.energy.resolution import slowest_meter
from sweeper.errors import DiskFull, StoreUnavailable
from sweeper.run.idle import IdlePower, idle_power
from sweeper.run.inference_gate import needs_inference
from sweeper.run.liveness import Heartbeat, live_twin
from sweeper.run.net import net_columns
from sweeper.run.prepare import Prepared, new_run_row
from sweeper.run.recording import (
    Recorder,
    RunError,
    record_cut_phases,
    sigterm_as_interrupt,
    uncertainty_columns,
)
from sweeper.run.result import JobResult
from sweeper.run.stopping import PRUNED, EarlyStop
from sweeper.store import Run
from sweeper.store import runs as store_runs
from sweeper.training.heap import frozen_heap

log = logging.getLogger(__name__)


class TakenByTwin(Exception):
    """Another live process already runs (or just finished) this config of the sweep."""

    def __init__(self, twin: Run) -> None:
        self.twin = twin
        where = "completed" if twin.status == "completed" else (
            f"running in pid {twin.pid} on {twin.host}"
        )
        super().__init__(f"run {twin.id} of the same config is {where}")


class MeasuredRun:
    """One run row and the sampler that measures it."""

    def __init__(self, p: Prepared, *, ok_status: str = "completed") -> None:
        self.p = p
        self.ok_status = ok_status
        self.status = ok_status
        self.error: RunError = None
        self.interrupt: KeyboardInterrupt | None = None
        self.summary: energy.EnergySummary | None = None
        self.values: dict[str, Any] = {}
        # Measured (or reused) before the run row exists: it is no part of the run.
        self.idle: IdlePower | None = idle_power(p)
        self.run_id = store_runs.insert_run(p.store, new_run_row(p))
        self._claim()
        self.resolution = slowest_meter(p.meters.meters)  # (refresh period s, source)
        self.recorder = Recorder(p.store, self.run_id, p.spec.energy.keep_samples, self.resolution)
        # The machine's load is polled with the meters, per phase and for the whole run.
        self.contention = ContentionProbe()
        self.sampler = energy.EnergySampler(
            [*p.meters.meters, self.contention], sample_hz=p.spec.energy.sample_hz,
            on_samples=self.recorder.samples,
        )
        self._t0 = time.perf_counter()

    def _claim(self) -> None:
        """Two processes started on one sweep share its work: the row inserted first keeps
        the config, a later one gives its fresh row up (it recorded nothing yet)."""
        p = self.p
        if not p.sweep.resume or launch().active:
            return
        twin = live_twin(p.store, p.sweep_id, p.spec.config_hash, self.run_id,
                         needs_inference(p.spec.sweeper.inference_front))
        if twin is not None:
            store_runs.delete_run(p.store, self.run_id)
            raise TakenByTwin(twin)

    @property
    def ok(self) -> bool:
        return self.status == self.ok_status

    def measure(self, body: Callable[[], Any]) -> None:
        """Run the mode's work under the sampler; record, never raise, what stopped it."""
        try:
            with sigterm_as_interrupt(), Heartbeat(self.run_id, self.recorder.beat), \
                    frozen_heap():  # no 100 ms full collection inside a measured step
                self.sampler.start()
                try:
                    body()
                finally:
                    self.summary = self.sampler.stop()
                    self.p.meters.close()
        except EarlyStop as exc:  # the energy rule, not a failure: recorded with its reason
            self.status = PRUNED
            self.values["stop_reason"] = str(exc)
            log.info("run %d pruned: %s", self.run_id, exc)
        except DiskFull as exc:  # one try to say so in the row; the next command reruns it
            self.recorder.record_failure_now(type(exc).__name__, str(exc))
            raise
        except StoreUnavailable:
            raise  # nothing more can be recorded: the next command reclaims the run
        except KeyboardInterrupt as exc:
            self.status, self.interrupt = "interrupted", exc
            self.error = (type(exc).__name__, str(exc) or "interrupted by the user")
        except Exception as exc:  # a broken configuration must not stop the sweep
            self.fail(type(exc).__name__, str(exc))
        # The phase a failure cut short, and finished phases still waiting for the meter's
        # next refresh to finalise their boundary.
        record_cut_phases(self.recorder, self.sampler)

    def fail(self, error_type: str, message: str) -> None:
        self.status, self.error = "failed", (error_type, message)
        log.error("run %d failed: %s: %s", self.run_id, error_type, message)

    def summary_columns(
        self, total_j: float | None, gross: dict[str, Any] | None = None, *,
        by_kind: bool = False,
    ) -> dict[str, Any]:
        """Meter, power, uncertainty, warnings, carbon, machine load and net-of-idle energies
        of the run, for its `total_j` joules and the `gross` columns gathered so far;
        `by_kind` adds the uncertainty of E_tr, evaluation and E_in."""
        spec, carbon = self.p.spec, self.p.carbon
        out: dict[str, Any] = {
            "carbon_intensity_g_per_kwh": carbon.g_per_kwh, "carbon_source": carbon.source,
        }
        uncertainty = uncertainty_columns(self.recorder.phases, self.summary)
        flagged = uncertainty.pop("flagged_phases", None)
        total_uncertainty_j = uncertainty.pop("energy_total_uncertainty_j")
        if by_kind:
            out.update(uncertainty)
        warnings = list(self.p.meters.warnings) + ([flagged] if flagged else [])
        if self.summary is not None:
            warnings += self.summary.warnings
            out.update(
                meter_source=self.summary.source, mean_power_w=self.summary.mean_power_w,
                peak_power_w=self.summary.peak_power_w,
            )
        if total_j is not None:
            out.update(energy_total_j=total_j, energy_total_uncertainty_j=total_uncertainty_j,
                       co2_g=energy.co2_g(total_j, carbon.g_per_kwh, spec.energy.pue))
        load = self.contention.total()
        busy = busy_warning(load, spec.energy.busy_other_cpu_pct)
        out.update(other_cpu_pct=load.other_cpu_pct, load_avg_1m=load.load_avg_1m,
                   machine_busy=busy is not None)
        if busy:
            warnings.append(busy)
        shared = shared_gpu_warning(ph.utilisation for ph in self.recorder.phases)
        if shared:
            warnings.append(shared)
        inference = [ph for ph in self.recorder.phases if ph.kind == "inference"]
        short = [why for why in map(self.recorder.low_resolution, inference) if why]
        if short:  # one line, however many per-epoch inference phases were short
            count = f" ({len(short)} of {len(inference)} inference phases)" if (
                len(inference) > 1) else ""
            warnings.append(f"E_in is low-resolution{count}: {short[0]}")
        sources: dict[str, str] = {}
        for ph in self.recorder.phases:
            sources.update(ph.sources)
        net, net_warnings = net_columns(
            {**self.values, **(gross or {}), **out}, self.idle, sources,
            None if self.summary is None else self.summary.duration_s,
        )
        out.update(net)
        warnings += net_warnings
        out["measurement_warning"] = "; ".join(warnings) or None
        return out

    def close(self) -> None:
        """Write the row's status, timing, error and values; then re-raise an interrupt."""
        self.recorder.close(self.values, self.status, self.error, self._t0)
        if self.interrupt is not None:
            raise self.interrupt

    def result(self, **extra: Any) -> JobResult:
        v = self.values
        return JobResult(
            status=self.status, run_id=self.run_id, sweep_id=self.p.sweep_id,
            val_accuracy=v.get("val_accuracy"), test_accuracy=v.get("test_accuracy"),
            energy_train_j=v.get("energy_train_j"),
            energy_inference_j=v.get("energy_inference_j"),
            energy_per_inference_sample_j=v.get("energy_per_inference_sample_j"),
            energy_total_j=v.get("energy_total_j"), co2_g=v.get("co2_g"),
            meter_source=v.get("meter_source"),
            error=None if self.error is None else f"{self.error[0]}: {self.error[1]}",
            extra=extra,
        )
