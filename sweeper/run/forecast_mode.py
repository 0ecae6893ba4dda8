"""`mode=forecast`: measure only the profiling window of a configuration and forecast the
energy, time and CO2 of its full training, without training it.

The profile is the one every training run takes (warm-up steps, then `forecast.window` of
the planned steps), so a forecast here is the forecast the full run would have made. It is
stored as a run with status "forecast": the energy columns hold what the profile really
used, the forecast_* columns the prediction for the whole training.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

from sweeper import energy
from sweeper.predict.forecast import Forecast, ProfileWindow
from sweeper.run.measured import MeasuredRun
from sweeper.run.prepare import Prepared, profile_floors
from sweeper.run.recording import forecast_columns
from sweeper.run.result import JobResult

FORECAST_STATUS = "forecast"


def execute_forecast(p: Prepared) -> JobResult:
    """Run warm-up + window steps in one measured "profile" phase and store the forecast."""
    run = MeasuredRun(p, ok_status=FORECAST_STATUS)
    loader = p.loaders["train"]
    total = len(loader) * p.spec.epochs
    profile = ProfileWindow(
        total, p.spec.forecast.window, p.spec.forecast.warmup_steps,
        run.sampler.checkpoint, steps_per_epoch=len(loader),
        **profile_floors(p),  # edges settled by the end of the run
    )

    def until_done(batches: Iterable[Any]) -> Iterator[Any]:
        for batch in batches:  # the hook ran after the previous step: stop once it closed
            if profile.result is not None:
                return
            yield batch

    def body() -> None:
        with run.sampler.phase("profile", 0) as ph:
            profile.start()
            steps = samples = 0
            loss = accuracy = None
            # The window's time floor decides when it ends, so steps run until it has.
            while profile.result is None and steps < total:
                stats = p.trainer.train_epoch(
                    until_done(itertools.islice(loader, total - steps)), profile.on_step
                )
                steps, samples = steps + stats.steps, samples + stats.samples
                loss, accuracy = stats.loss, stats.accuracy
                if stats.steps == 0:
                    break
        run.recorder.phase(ph.result, steps=steps, samples=samples, loss=loss, accuracy=accuracy)

    run.measure(body)
    forecast = profile.settled()
    if run.ok and forecast is None:
        run.fail("ForecastError", "the profiling window did not complete")
    # The energy columns hold what the profile really used.
    run.values.update(run.summary_columns(
        run.summary.energy_j if run.summary is not None else None
    ))
    forecast_co2_g = None
    if forecast is not None:
        forecast_co2_g = energy.co2_g(forecast.energy_j, p.carbon.g_per_kwh, p.spec.energy.pue)
        run.values.update(forecast_columns(forecast))
    run.close()
    if forecast is not None and run.ok:
        spec = p.spec
        print_forecast(spec.model_label, spec.dataset, spec.batch, spec.epochs, run.run_id,
                       forecast, forecast_co2_g, run.values.get("meter_source"),
                       run.values.get("energy_total_j"))
    return run.result(
        mode="forecast",
        forecast_energy_train_j=None if forecast is None else forecast.energy_j,
        forecast_duration_train_s=None if forecast is None else forecast.duration_s,
        forecast_co2_g=forecast_co2_g,
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
    if forecast.energy_low_j is not None and forecast.energy_high_j is not None:
        table.add_row("E_tr 90% interval",
                      f"{forecast.energy_low_j:.1f} - {forecast.energy_high_j:.1f} J")
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
