"""`mode=forecast`: measure only the profiling window of a configuration and forecast the
energy, time and CO2 of its full training, without training it.

The profile is the one every training run takes (warm-up steps, then `forecast.window` of
the planned steps), so a forecast here is the forecast the full run would have made. It is
stored as a run with status "forecast": the energy columns hold what the profile really
used, the forecast_* columns the prediction for the whole training.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from sweeper import energy
from sweeper.forecast import Forecast, ProfileWindow
from sweeper.liveness import Heartbeat
from sweeper.recording import (
    Recorder,
    RunError,
    close_run,
    forecast_columns,
    record_cut_phases,
    sigterm_as_interrupt,
)
from sweeper.store import runs as store_runs

if TYPE_CHECKING:
    from sweeper.job import JobResult, Prepared

log = logging.getLogger(__name__)

FORECAST_STATUS = "forecast"


def execute_forecast(p: Prepared) -> JobResult:
    """Run warm-up + window steps in one measured "profile" phase and store the forecast."""
    from sweeper.job import JobResult, new_run_row

    spec, store = p.spec, p.store
    run_id = store_runs.insert_run(store, new_run_row(p))
    recorder = Recorder(store, run_id, spec.keep_samples)
    sampler = energy.EnergySampler(
        p.meters.meters, sample_hz=spec.sample_hz, on_samples=recorder.samples
    )
    loader = p.loaders["train"]
    total_steps = len(loader) * spec.epochs
    profile = ProfileWindow(
        total_steps, spec.forecast_window, spec.forecast_warmup_steps, sampler.energy_so_far_j
    )
    needed = profile.warmup_steps + profile.profiled_steps
    status = FORECAST_STATUS
    error: RunError = None
    interrupt: KeyboardInterrupt | None = None
    values: dict[str, Any] = {}
    summary: energy.EnergySummary | None = None
    t0 = time.perf_counter()
    try:
        with sigterm_as_interrupt(), Heartbeat(store, run_id):
            sampler.start()
            try:
                with sampler.phase("profile", 0) as ph:
                    profile.start()
                    steps = samples = 0
                    loss = accuracy = None
                    while steps < needed:
                        stats = p.trainer.train_epoch(
                            itertools.islice(loader, needed - steps), profile.on_step
                        )
                        steps, samples = steps + stats.steps, samples + stats.samples
                        loss, accuracy = stats.loss, stats.accuracy
                        if stats.steps == 0:
                            break
                recorder.phase(ph.result, steps=steps, samples=samples, loss=loss,
                               accuracy=accuracy)
            finally:
                summary = sampler.stop()
                p.meters.close()
    except KeyboardInterrupt as exc:
        status, interrupt = "interrupted", exc
        error = (type(exc).__name__, str(exc) or "interrupted by the user")
    except Exception as exc:  # recorded like a failed training run
        status, error = "failed", (type(exc).__name__, str(exc))
        log.error("forecast run %d failed: %s: %s", run_id, *error)
    forecast = profile.result
    if status == FORECAST_STATUS and forecast is None:
        status, error = "failed", ("ForecastError", "the profiling window did not complete")
    record_cut_phases(recorder, sampler)  # the profile phase may wait for a refresh
    if summary is not None:
        values.update(
            energy_total_uncertainty_j=summary.energy_uncertainty_j,
            energy_total_j=summary.energy_j, meter_source=summary.source,
            mean_power_w=summary.mean_power_w, peak_power_w=summary.peak_power_w,
            measurement_warning="; ".join(summary.warnings) or None,
            co2_g=energy.co2_g(summary.energy_j, p.carbon.g_per_kwh, spec.pue),
        )
    values.update(carbon_intensity_g_per_kwh=p.carbon.g_per_kwh, carbon_source=p.carbon.source)
    forecast_co2_g = None
    if forecast is not None:
        forecast_co2_g = energy.co2_g(forecast.energy_j, p.carbon.g_per_kwh, spec.pue)
        values.update(forecast_columns(forecast))
    close_run(store, run_id, values, status, error, t0)
    if interrupt is not None:
        raise interrupt
    if forecast is not None and status == FORECAST_STATUS:
        print_forecast(spec.model, spec.dataset, spec.batch, spec.epochs, run_id, forecast,
                       forecast_co2_g, values.get("meter_source"), values.get("energy_total_j"))
    return JobResult(
        status=status, run_id=run_id, sweep_id=p.sweep_id,
        energy_total_j=values.get("energy_total_j"), co2_g=values.get("co2_g"),
        meter_source=values.get("meter_source"),
        error=None if error is None else f"{error[0]}: {error[1]}",
        extra={
            "mode": "forecast",
            "forecast_energy_train_j": None if forecast is None else forecast.energy_j,
            "forecast_duration_train_s": None if forecast is None else forecast.duration_s,
            "forecast_co2_g": forecast_co2_g,
        },
    )


def print_forecast(
    model: str,
    dataset: str,
    batch: int,
    epochs: int,
    run_id: int,
    forecast: Forecast,
    co2_g: float | None,
    meter_source: str | None,
    profile_energy_j: float | None,
    console: Console | None = None,
) -> None:
    estimated = "estimate" in (meter_source or "")
    title = f"forecast of run {run_id}: {model}/{dataset} b{batch}, {epochs} epoch(s)"
    table = Table(title=title + (" (estimated)" if estimated else ""))
    table.add_column("quantity")
    table.add_column("full training", justify="right")
    table.add_row("steps", f"{forecast.total_steps}")
    table.add_row("E_tr", f"{forecast.energy_j:.1f} J ({forecast.energy_j / 3.6e3:.4f} Wh)")
    table.add_row("time", f"{forecast.duration_s:.1f} s")
    table.add_row("CO2", "-" if co2_g is None else f"{co2_g:.3f} g")
    profiled = forecast.warmup_steps + forecast.profiled_steps
    console = console or Console(width=120)
    console.print(table)
    console.print(
        f"from {forecast.warmup_steps} warm-up + {forecast.profiled_steps} profiled step(s) "
        f"({forecast.window:.0%} window; {profiled} of {forecast.total_steps} steps run, "
        f"{profile_energy_j or 0.0:.1f} J spent); meter {meter_source}"
        + ("; energy is an estimate, not a measurement" if estimated else ""),
        highlight=False, markup=False,
    )
