"""The end-of-sweep table: one row per run with accuracy, time and energy."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from sweeper.store import Run


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _joules(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 3.6e6:.3f} kWh"
    if value >= 1e3:
        return f"{value / 1e3:.2f} kJ"
    return f"{value:.1f} J"


# Statuses that are outcomes, not problems, are not shown in red.
_STATUS_COLOURS = {"completed": "", "forecast": "cyan", "pruned": "yellow", "skipped": ""}


def sweep_table(title: str, runs: Sequence[Run]) -> Table:
    estimated = any((r.meter_source or "").find("estimate") >= 0 for r in runs)
    table = Table(title=title, caption=_caption(runs, estimated))
    for column, justify in [
        ("run", "right"), ("model", "left"), ("dataset", "left"), ("batch", "right"),
        ("prec", "left"), ("lr", "right"), ("status", "left"), ("val acc", "right"),
        ("test acc", "right"), ("time", "right"), ("E_tr", "right"), ("E_in", "right"),
        ("E_in/sample", "right"), ("CO2", "right"), ("meter", "left"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        colour = _STATUS_COLOURS.get(r.status, "red")
        status = f"[{colour}]{r.status}[/{colour}]" if colour else r.status
        meter = r.meter_source or "-"
        if "estimate" in meter:
            meter = f"[yellow]{meter}[/yellow]"
        table.add_row(
            str(r.id), r.model, r.dataset, str(r.batch), r.precision, f"{r.lr:g}", status,
            _fmt(r.val_accuracy, ".3f"), _fmt(r.test_accuracy, ".3f"),
            _fmt(r.duration_s, ".1f") + ("s" if r.duration_s is not None else ""),
            _joules(r.energy_train_j), _joules(r.energy_inference_j),
            _fmt(None if r.energy_per_inference_sample_j is None
                 else r.energy_per_inference_sample_j * 1e3, ".3f")
            + (" mJ" if r.energy_per_inference_sample_j is not None else ""),
            _fmt(r.co2_g, ".3f") + (" g" if r.co2_g is not None else ""),
            meter,
        )
    return table


def _caption(runs: Sequence[Run], estimated: bool) -> str:
    lines = []
    if estimated:
        lines.append(
            "meter 'estimate': no NVML or RAPL readings here; energy is CPU utilisation x "
            "rated power (an estimate, not a measurement)"
        )
    for r in runs:
        if r.status in ("failed", "interrupted"):
            lines.append(f"run {r.id} {r.status}: {r.error_type}: {r.error_message}")
        elif r.stop_reason:
            lines.append(f"run {r.id} {r.status}: {r.stop_reason}")
        if r.measurement_warning:
            lines.append(f"run {r.id} measurement warning: {r.measurement_warning}")
    return "\n".join(lines)


def print_sweep(title: str, runs: Sequence[Run], console: Console | None = None) -> None:
    (console or Console(width=200)).print(sweep_table(title, runs))
