"""The report's terminal summary (rich): what was found, in a screenful."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeper.predict.estimator import EnergyFit
from sweeper.report.analysis import completed, pareto_mask


def print_summary(
    console: Console,
    runs: pd.DataFrame,
    guidelines: Sequence[str],
    fits: Sequence[EnergyFit],
    html_path: str,
    not_established: Sequence[str] = (),
) -> None:
    done = completed(runs)
    estimated = bool(runs["estimated"].any()) if not runs.empty else False
    statuses = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    console.print(f"[bold]sweeper report[/bold]: {len(runs)} run(s) ({statuses or 'none'})")
    if estimated:
        console.print("[yellow]some energy figures are estimates (meter 'estimate'): "
                      "relative, not measurements[/yellow]")
    front = done.dropna(subset=["accuracy"])
    if not front.empty:
        front = front[pareto_mask(front["energy_train_j"], front["accuracy"])]
        table = Table(title="Energy-accuracy Pareto front")
        for column in ("run", "model", "batch", "prec", "lr", "accuracy", "E_tr", "energy"):
            table.add_column(column, justify="left" if column in ("model", "energy") else "right")
        for r in front.sort_values("energy_train_j").itertuples():
            table.add_row(str(r.id), r.model, str(r.batch), r.precision, f"{r.lr:g}",
                          f"{r.accuracy:.3f}", f"{r.energy_train_j:.1f} J",
                          "[yellow]estimate[/yellow]" if r.estimated else "measured")
        console.print(table)
    if fits:
        table = Table(title="Energy per sample from model size (held-out error)")
        for column in ("target", "hardware", "meter", "configs", "models", "MAPE by config",
                       "R2 (log)", "MAPE by model"):
            table.add_column(column)
        for f in fits:
            table.add_row(f.target, f.hardware_id, f.meter_source, str(f.n_configs),
                          str(f.n_models), "-" if f.loo is None else f"{f.loo.mape:.1%}",
                          "-" if f.loo is None else f"{f.loo.r2_log:.2f}",
                          "-" if f.lomo is None else f"{f.lomo.mape:.1%}")
        console.print(table)
    if guidelines:
        console.print("[bold]Guidelines from the data[/bold]")
        for g in guidelines:
            console.print(f"  - {escape(g)}", highlight=False)
    if not_established:
        console.print(f"{len(not_established)} effect(s) not established (the interval spans "
                      "zero or rests on too few configurations): listed in the report")
    console.print(f"report: {html_path}")
