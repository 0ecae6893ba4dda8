"""The end-of-sweep table: one row per run with accuracy, time and energy."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from sweeper.energy.labels import describe_source
from sweeper.run.inference_gate import skipped_inference
from sweeper.store import Run


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _joules(value: float | None, uncertainty_j: float | None = None) -> str:
    """Joules in a readable unit, with the measurement uncertainty when it is known."""
    if value is None:
        return "-"
    scale, unit, digits = (3.6e6, "kWh", 3) if value >= 1e6 else (
        (1e3, "kJ", 2) if value >= 1e3 else (1.0, "J", 1)
    )
    if uncertainty_j is None:
        return f"{value / scale:.{digits}f} {unit}"
    return f"{value / scale:.{digits}f} ± {uncertainty_j / scale:.{digits}f} {unit}"


# Statuses that are outcomes, not problems, are not shown in red.
_STATUS_COLOURS = {"completed": "", "forecast": "cyan", "pruned": "yellow", "skipped": ""}


def _has_net(runs: Sequence[Run]) -> bool:
    """Whether any run subtracted a measured idle power (estimate-only runs have none)."""
    return any((r.idle_power_w or 0.0) > 0 for r in runs)


def sweep_table(title: str, runs: Sequence[Run]) -> Table:
    net = _has_net(runs)
    table = Table(title=title, caption=_caption(runs, net))
    columns = [
        ("run", "right"), ("model", "left"), ("dataset", "left"), ("batch", "right"),
        ("prec", "left"), ("lr", "right"), ("status", "left"), ("val acc", "right"),
        ("test acc", "right"), ("time", "right"), ("E_tr", "right"), ("E_in", "right"),
        ("E_in/sample", "right"), ("CO2", "right"), ("meter", "left"),
    ]
    if net:
        columns[11:11] = [("E_tr net", "right")]
    for column, justify in columns:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        colour = _STATUS_COLOURS.get(r.status, "red")
        status = f"[{colour}]{r.status}[/{colour}]" if colour else r.status
        meter = r.meter_source or "-"
        if "estimate" in meter:
            meter = f"[yellow]{meter}[/yellow]"
        if r.machine_busy:
            meter += " [red]busy[/red]"
        cells = [
            str(r.id), r.model, r.dataset, str(r.batch), r.precision, f"{r.lr:g}", status,
            _fmt(r.val_accuracy, ".3f"), _fmt(r.test_accuracy, ".3f"),
            _fmt(r.duration_s, ".1f") + ("s" if r.duration_s is not None else ""),
            _joules(r.energy_train_j, r.energy_train_uncertainty_j),
            _joules(r.energy_inference_j, r.energy_inference_uncertainty_j),
            _fmt(None if r.energy_per_inference_sample_j is None
                 else r.energy_per_inference_sample_j * 1e3, ".3f")
            + (" mJ" if r.energy_per_inference_sample_j is not None else ""),
            _fmt(r.co2_g, ".3f") + (" g" if r.co2_g is not None else ""),
            meter,
        ]
        if net:
            cells[11:11] = [_joules(r.energy_train_net_j)]
        table.add_row(*cells)
    return table


def _caption(runs: Sequence[Run], net: bool) -> str:
    lines = []
    for source in sorted({r.meter_source for r in runs if r.meter_source}):
        lines.append(f"meter '{source}': {describe_source(source)}")
    if net:
        lines.append(
            "E_tr, E_in, E_in/sample and CO2 are gross (all the meters read: the study's "
            "quantity); E_tr net = gross - idle power x training time (sweeper's addition; "
            "idle measured per host, never below 0)"
        )
    elif runs and all(r.meter_source == "estimate" for r in runs):
        lines.append("the estimate counts this process's own use only: it has no idle "
                     "power by convention, so net and gross are the same")
    elif any(r.meter_source for r in runs):
        lines.append("energy is gross (all the meters read); no idle power was subtracted "
                     "(no idle baseline: energy.idle.seconds=0)")
    if any(r.energy_train_uncertainty_j is not None for r in runs):
        nvml = any("nvml" in (r.meter_source or "") for r in runs)
        lines.append("±: how far the meters' readings at phase boundaries may be off (their "
                     "refresh" + (", and how NVML's refreshes were split between phases"
                                  if nvml else "") + "), not run-to-run variation")
    busy = [r.id for r in runs if r.machine_busy]
    if busy:
        lines.append(f"busy: run(s) {', '.join(map(str, busy))} measured while other "
                     "processes loaded the machine (see their warnings)")
    skipped = [r.id for r in runs if r.status == "completed" and skipped_inference(r.stop_reason)]
    if skipped:  # one line for a search's many dominated trials; each reason is in the store
        lines.append(f"E_in not measured: run(s) {', '.join(map(str, skipped))} skipped the "
                     "inference benchmark, dominated by the search's front when they ended "
                     "(runs.stop_reason)")
    for r in runs:
        if r.status in ("failed", "interrupted"):
            lines.append(f"run {r.id} {r.status}: {r.error_type}: {r.error_message}")
        elif r.stop_reason and r.id not in skipped:
            lines.append(f"run {r.id} {r.status}: {r.stop_reason}")
        if r.measurement_warning:
            lines.append(f"run {r.id} measurement warning: {r.measurement_warning}")
    return "\n".join(lines)


def print_sweep(title: str, runs: Sequence[Run], console: Console | None = None) -> None:
    (console or Console(width=200)).print(sweep_table(title, runs))
