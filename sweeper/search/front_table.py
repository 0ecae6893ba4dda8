"""The Pareto front of a study as a table: the trials no other trial beats on both
accuracy and energy, cheapest first, each with its run id and meter source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweeper.energy.labels import ESTIMATED
from sweeper.search.settings import OBJECTIVES


@dataclass(frozen=True)
class FrontRow:
    trial: int
    run_id: int | None
    val_accuracy: float
    objective_value: float
    energy_train_j: float | None
    meter_source: str | None
    params: dict[str, Any]


def front_rows(study: optuna.Study) -> list[FrontRow]:
    """Pareto-optimal completed trials, cheapest first."""
    rows = [
        FrontRow(
            trial=t.number,
            run_id=t.user_attrs.get("run_id"),
            val_accuracy=t.values[0],
            objective_value=t.values[1],
            energy_train_j=t.user_attrs.get("energy_train_j"),
            meter_source=t.user_attrs.get("meter_source"),
            params=dict(t.params),
        )
        for t in study.best_trials
    ]
    return sorted(rows, key=lambda r: (r.objective_value, -r.val_accuracy))


def _objective(study: optuna.Study) -> str:
    names = study.metric_names or []
    return names[1] if len(names) > 1 else str(study.user_attrs.get("objective", "energy"))


def _amount(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "J" and value >= 1e3:
        return f"{value / 1e3:.2f} kJ"
    if unit == "J" and value < 1:
        return f"{value * 1e3:.3f} mJ"
    return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"


def _counts(trials: Sequence[FrozenTrial]) -> str:
    states = [t.state for t in trials]
    parts = [
        f"{states.count(s)} {s.name.lower()}"
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
        if states.count(s)
    ]
    return ", ".join(parts) or "no trials"


def front_table(study: optuna.Study, store_url: str | None = None) -> Table:
    objective = _objective(study)
    unit = OBJECTIVES.get(objective, "")
    rows = front_rows(study)
    trials = study.get_trials(deepcopy=False)
    where = f" in {store_url}" if store_url else ""
    table = Table(
        title=escape(
            f"Pareto front of study {study.study_name!r}{where}: "
            f"{len(rows)} of {len(trials)} trial(s) ({_counts(trials)})"
        ),
        caption=_caption(study, rows),
    )
    for column, justify in [
        ("trial", "right"), ("run", "right"), ("val acc", "right"),
        (objective, "right"), ("E_tr", "right"), ("meter", "left"), ("params", "left"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        meter = r.meter_source or "-"
        if "estimate" in meter:
            meter = f"[yellow]{meter}[/yellow]"
        table.add_row(
            str(r.trial), "-" if r.run_id is None else str(r.run_id), f"{r.val_accuracy:.3f}",
            _amount(r.objective_value, unit), _amount(r.energy_train_j, "J"), meter,
            escape(" ".join(f"{k}={_param(v)}" for k, v in r.params.items())),
        )
    return table


def _param(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _caption(study: optuna.Study, rows: Sequence[FrontRow]) -> str:
    lines = []
    if any("estimate" in (r.meter_source or "") for r in rows):
        lines.append(f"meter 'estimate': {ESTIMATED}")
    reason = study.user_attrs.get("stop_reason")
    if reason:
        lines.append(escape(f"last invocation stopped: {reason}"))
    return "\n".join(lines)


def print_front(
    study: optuna.Study, objective: str | None = None, *, store_url: str | None = None,
    console: Console | None = None,
) -> None:
    del objective  # the study's own metric names say which energy it minimises
    (console or Console(width=200)).print(front_table(study, store_url))
