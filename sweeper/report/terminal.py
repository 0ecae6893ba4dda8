"""The report's terminal summary (rich): what was found, in a screenful."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeper.predict.estimator import EnergyFit
from sweeper.report.analysis import accuracy_name, energy_accuracy_front


def print_summary(
    console: Console,
    runs: pd.DataFrame,
    guidelines: Sequence[str],
    fits: Sequence[EnergyFit],
    html_path: str,
    not_established: Sequence[str] = (),
    findings: Sequence[str] = (),
) -> None:
    estimated = bool(runs["estimated"].any()) if not runs.empty else False
    statuses = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    console.print(f"[bold]sweeper report[/bold]: {len(runs)} run(s) ({statuses or 'none'})")
    if estimated:
        console.print("[yellow]some energy figures are estimates (meter 'estimate'): "
                      "relative, not measurements[/yellow]")
    front = energy_accuracy_front(runs)
    if front["on_front"].any():
        table = Table(title=f"Energy-accuracy front, chosen on {accuracy_name(front)} "
                            "(epsilon-dominance on the energy uncertainty; runs at chance "
                            "never on it)")
        for column in ("run", "model", "batch", "prec", "lr", "chosen on", "test acc", "E_tr",
                       "± E_tr", "energy"):
            table.add_column(column, justify="left" if column in ("model", "energy") else "right")
        for r in front[front["on_front"]].itertuples():
            table.add_row(str(r.id), r.model, str(r.batch), r.precision, f"{r.lr:g}",
                          f"{r.selection_accuracy:.3f} {r.selection_set}",
                          "-" if r.test_accuracy != r.test_accuracy else f"{r.test_accuracy:.3f}",
                          f"{r.energy_train_j:.1f} J",
                          "-" if r.energy_train_uncertainty_j != r.energy_train_uncertainty_j
                          else f"{r.energy_train_uncertainty_j:.2g} J",
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
    if findings:
        console.print("[bold]The study's findings on this sweep[/bold]")
        for line in findings:
            console.print(f"  - {escape(line)}", highlight=False)
    if not_established:
        console.print(f"{len(not_established)} effect(s) not established (the interval spans "
                      "zero or rests on too few configurations): listed in the report")
    console.print(f"report: {html_path}")
