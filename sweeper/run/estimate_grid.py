"""The grid view of `mode=estimate`: one table of every configuration's predicted joules
and hours, with intervals and the grid's total, printed once the multirun has predicted
each configuration (nothing trains, nothing is stored in the database).

Each job leaves its estimate in its own output folder (sweeper.run.estimate_files) and the
launching process reads them all at the end, so the table is the same whichever launcher
ran the jobs (in this process, joblib's workers, submitit's jobs on other nodes).

Totals add the per-configuration bounds: one machine's fit errs the same way for similar
configurations, so treating the errors as independent would give a falsely narrow total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeper.run.estimate_mode import ZERO, ConfigEstimate, Range, interval_note, score_line


def _in_unit(value: float | None, scale: float | None, units: tuple) -> str:
    """`value` in the largest unit that `scale` (default: the value itself) reaches."""
    if value is None:
        return "-"
    reference = value if scale is None else scale
    size, name = next(((size, name) for threshold, size, name in units
                       if reference >= threshold), units[-1][1:])
    number = value / size
    return f"{number:,.0f} {name}" if abs(number) >= 1000 else f"{number:.3g} {name}"


def energy_text(joules: float | None, scale: float | None = None) -> str:
    """kWh from 0.1 kWh up, else kJ or J."""
    return _in_unit(joules, scale, ((3.6e5, 3.6e6, "kWh"), (1e3, 1e3, "kJ"), (0.0, 1.0, "J")))


def time_text(seconds: float | None, scale: float | None = None) -> str:
    return _in_unit(seconds, scale, ((3600.0, 3600.0, "h"), (60.0, 60.0, "min"),
                                     (0.0, 1.0, "s")))


def _interval(r: Range | None, fmt) -> str:  # type: ignore[no-untyped-def]
    """Both bounds in the unit of the point estimate."""
    if r is None or r.low is None or r.high is None:
        return "-"
    return f"{fmt(r.low, r.value)} - {fmt(r.high, r.value)}"


def grid_totals(estimates: Sequence[ConfigEstimate]) -> tuple[Range, Range | None]:
    energy, duration = ZERO, ZERO
    timed = all(e.duration_s is not None for e in estimates)
    for e in estimates:
        energy = energy + e.energy_j
        if e.duration_s is not None:
            duration = duration + e.duration_s
    return energy, duration if timed else None


def grid_table(estimates: Sequence[ConfigEstimate]) -> Table:
    level = estimates[0].predictions["train"].level
    estimated = any(e.predictions["train"].estimated for e in estimates)
    table = Table(title=f"estimate of a {len(estimates)}-configuration grid (nothing run)"
                  + (" (estimated energy)" if estimated else ""), show_footer=True)
    energy, duration = grid_totals(estimates)
    columns = [
        ("configuration", "total", "left"), ("epochs", "", "right"),
        ("energy", energy_text(energy.value), "right"),
        (f"{level:.0%} interval", _interval(energy, energy_text), "right"),
        ("time", time_text(None if duration is None else duration.value), "right"),
        (f"{level:.0%} interval ", _interval(duration, time_text), "right"),
        ("model run before", "", "left"),
    ]
    for header, footer, justify in columns:
        table.add_column(header, footer=footer, justify=justify)  # type: ignore[arg-type]
    for e in estimates:
        table.add_row(
            e.label, str(e.epochs), energy_text(e.energy_j.value),
            _interval(e.energy_j, energy_text),
            time_text(None if e.duration_s is None else e.duration_s.value),
            _interval(e.duration_s, time_text), "yes" if e.known_model else "no",
        )
    return table


def print_grid(estimates: Sequence[ConfigEstimate], console: Console | None = None) -> None:
    console = console or Console(width=160)
    if not estimates:
        return
    console.print(grid_table(estimates))
    first = estimates[0]
    lines = [score_line(t, p) for t, p in first.predictions.items()]
    lines.append("energy: training, evaluation passes (costed at the inference rate) and the "
                 "inference benchmark; totals add the per-configuration bounds")
    if all(e.co2_g is not None for e in estimates):
        co2_kg = sum(e.co2_g or 0.0 for e in estimates) / 1e3
        lines.append(f"CO2 of the total: {co2_kg:.3g} kg (energy.country, energy.pue)")
    if first.duration_s is None:
        lines.append("no fitted run stored its durations: no time estimate")
    unseen = sorted({e.label.split(" ")[0] for e in estimates if not e.known_model})
    if unseen:
        lines.append(f"{len(unseen)} model(s) never run on this hardware ({', '.join(unseen)})")
        lines.append(model_coverage([(e.label.split(" ")[0], e.known_model, e.macs_per_sample)
                                     for e in estimates]))
    lines.append(interval_note(first.predictions["train"]))
    warned = [e for e in estimates if e.warnings]
    if warned:
        lines.append(f"{len(warned)} configuration(s) with warnings, e.g. {warned[0].label}: "
                     f"{warned[0].warnings[0]}")
    if first.predictions["train"].estimated:
        lines.append("the fitted energies come from the estimate meter: relative, not measured")
    for line in lines:
        console.print(escape(line), highlight=False)


def model_coverage(rows: Sequence[tuple[str, bool, float]]) -> str:
    """Which models were measured, which are extrapolated, and by how much: each unmeasured
    model's MACs per sample against the nearest measured model's (issue 24)."""
    measured = {m: macs for m, known, macs in rows if known}
    unseen = {m: macs for m, known, macs in rows if not known}
    if not measured:
        return f"measured: none of these models; extrapolated: {', '.join(sorted(unseen))}"
    parts = []
    for model, macs in sorted(unseen.items(), key=lambda kv: kv[1]):
        near, near_macs = min(measured.items(), key=lambda kv: abs(math.log(kv[1] / macs)))
        ratio = macs / near_macs
        low, high = min(measured.values()), max(measured.values())
        where = "within" if low <= macs <= high else "outside"
        parts.append(f"{model} ({ratio:.2g}x the MACs of {near}, {where} the measured range)")
    return (f"measured: {', '.join(sorted(measured))}; extrapolated: " + "; ".join(parts))
