"""The report's HTML page: one self-contained file next to its PNG figures, rendered from
the Jinja2 template shipped in sweeper/report/templates (autoescaped).

This module turns frames and analysis results into plain tables (headers, formatted cells,
which rows are estimates); the template lays them out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from sweeper.energy.labels import ESTIMATED
from sweeper.pareto import ACCURACY_MARGIN, CHANCE_MARGIN
from sweeper.predict.estimator import EnergyFit
from sweeper.report.analysis import Correlation, WindowAccuracy, accuracy_name
from sweeper.report.configs import BatchTable, CorrelationMatrix
from sweeper.report.findings import FindingCheck

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class FigureRef:
    file: str
    title: str
    note: str = ""


@dataclass(frozen=True)
class HtmlTable:
    """A table ready to render: formatted cells, which rows are estimates, which columns
    are text (left-aligned)."""

    headers: list[str]
    rows: list[list[str]]
    estimated: list[bool] = field(default_factory=list)
    text_columns: frozenset[int] = frozenset()
    title: str = ""
    wrap: bool = False  # long sentences in cells: wrap them instead of scrolling

    def row_is_estimated(self, index: int) -> bool:
        return bool(self.estimated) and self.estimated[index]


def _cell(value: Any, fmt: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt and isinstance(value, int | float):
        return format(value, fmt)
    return str(value)


RUN_TABLE: list[tuple[str, str, str]] = [  # header, column, format
    ("run", "id", ""), ("sweep", "sweep", ""), ("model", "model", ""),
    ("dataset", "dataset", ""), ("batch", "batch", ""), ("lr", "lr", "g"),
    ("prec", "precision", ""), ("epochs", "epochs", ""), ("status", "status", ""),
    ("val acc", "val_accuracy", ".3f"), ("test acc", "test_accuracy", ".3f"),
    ("learnt", "chance_mark", ""), ("E_tr (J)", "energy_train_j", ".1f"),
    ("± E_tr", "energy_train_uncertainty_j", ".1f"),
    ("E_in (J)", "energy_inference_j", ".2f"), ("± E_in", "energy_inference_uncertainty_j", ".2f"),
    ("E_in/sample (mJ)", "energy_per_inference_sample_mj", ".3f"),
    ("total (J)", "energy_total_j", ".1f"), ("CO2 (g)", "co2_g", ".3f"),
    ("MACs", "macs_per_sample", ".3g"), ("params", "params", ".3g"),
    ("forecast err", "forecast_error", "+.1%"), ("meter", "meter_source", ""),
    ("energy is", "energy_kind", ""),
]
RUN_TEXT_COLUMNS = ("sweep", "model", "dataset", "precision", "status", "meter_source",
                    "energy_kind", "chance_mark")


def runs_table(runs: pd.DataFrame) -> HtmlTable:
    frame = runs.assign(
        energy_per_inference_sample_mj=runs["energy_per_inference_sample_j"] * 1e3,
        energy_kind=runs["estimated"].map({True: "ESTIMATE", False: "measured"}),
        chance_mark=runs["at_chance"].map({True: "AT CHANCE", False: "yes"}),
    )
    rows = [[_cell(r[c], f) for _, c, f in RUN_TABLE] for _, r in frame.iterrows()]
    text = frozenset(i for i, (_, c, _) in enumerate(RUN_TABLE) if c in RUN_TEXT_COLUMNS)
    return HtmlTable([h for h, _, _ in RUN_TABLE], rows, list(frame["estimated"]), text)


def forecast_runs_table(runs: pd.DataFrame) -> HtmlTable | None:
    rows = runs[runs["status"] == "forecast"]
    if rows.empty:
        return None
    columns: list[tuple[str, Callable[[pd.Series], str]]] = [
        ("run", lambda r: _cell(r["id"])), ("model", lambda r: _cell(r["model"])),
        ("batch", lambda r: _cell(r["batch"])), ("epochs", lambda r: _cell(r["epochs"])),
        ("window", lambda r: _cell(r["forecast_window"], ".0%")),
        ("profiled steps", lambda r: _cell(r["forecast_steps"])),
        ("forecast E_tr (J)", lambda r: _cell(r["forecast_energy_train_j"], ".1f")),
        ("forecast time (s)", lambda r: _cell(r["forecast_duration_train_s"], ".1f")),
        ("forecast CO2 (g)", lambda r: _cell(r["forecast_co2_g"], ".3f")),
        ("profile spent (J)", lambda r: _cell(r["energy_total_j"], ".1f")),
        ("meter", lambda r: _cell(r["meter_source"])),
    ]
    body = [[f(r) for _, f in columns] for _, r in rows.iterrows()]
    return HtmlTable([h for h, _ in columns], body, list(rows["estimated"]), frozenset({1, 10}))


def _interval(ci: tuple[float, float]) -> str:
    return "-" if not all(math.isfinite(v) for v in ci) else f"{ci[0]:+.2f} to {ci[1]:+.2f}"


def correlations_table(items: Sequence[Correlation]) -> HtmlTable:
    rows = [[c.machine, c.y, c.x, str(c.n), c.transform, _cell(c.pearson, "+.2f"),
             _interval(c.pearson_ci), _cell(c.spearman, "+.2f"), _interval(c.spearman_ci),
             "ESTIMATE" if c.estimated else "measured"] for c in items]
    return HtmlTable(["machine (meter)", "energy", "against", "configurations", "Pearson on",
                      "Pearson", "Pearson 95% CI", "Spearman", "Spearman 95% CI", "energy is"],
                     rows, [c.estimated for c in items], frozenset({0, 1, 2, 4, 9}))


def front_table(front: pd.DataFrame) -> HtmlTable:
    """The runs on the uncertainty-aware front: chosen on selection accuracy, test accuracy
    beside it."""
    on = front[front["on_front"]]
    rows = [[_cell(r["id"]), _cell(r["model"]), _cell(r["batch"]), _cell(r["lr"], "g"),
             _cell(r["precision"]), f"{r['hardware_id']} ({r['meter_source']})",
             _cell(r["selection_accuracy"], ".3f"), _cell(r["selection_set"]),
             _cell(r["test_accuracy"], ".3f"), _cell(r["energy_train_j"], ".4g"),
             _cell(r["energy_train_uncertainty_j"], ".2g")] for _, r in on.iterrows()]
    return HtmlTable(["run", "model", "batch", "lr", "prec", "machine (meter)",
                      "chosen on accuracy", "of set", "test accuracy", "E_tr (J)", "± E_tr (J)"],
                     rows, list(on["estimated"]), frozenset({1, 4, 5, 7}))


def findings_table(checks: Sequence[FindingCheck]) -> HtmlTable:
    rows = [[c.finding, c.measured, c.verdict, c.paper] for c in checks]
    return HtmlTable(["the study's finding", "measured on this sweep (95% CI, n)",
                      "here", "the paper's figure"], rows, [], frozenset({0, 1, 2, 3}),
                     wrap=True)


def strong_correlations_table(matrices: Sequence[CorrelationMatrix]) -> HtmlTable:
    rows, marks = [], []
    for m in matrices:
        for a, b, pearson, spearman, n in m.strong():
            rows.append([f"{m.hardware_id} ({m.meter_source})", a, b, _cell(pearson, "+.2f"),
                         _cell(spearman, "+.2f"), str(n)])
            marks.append(m.estimated)
    return HtmlTable(["machine (meter)", "metric", "metric", "Pearson", "Spearman",
                      "configurations"], rows, marks, frozenset({0, 1, 2}))


def _batch_cell(value: float, n: int, chance: int, fmt: str) -> str:
    if n == 0 and chance == 0:
        return "-"
    if n == 0:
        return f"{_cell(value, fmt)} ({chance}, at chance)"
    return f"{_cell(value, fmt)} ({n})" + (f" +{chance} at chance, not in the mean"
                                             if chance else "")


def batch_table(table: BatchTable) -> HtmlTable:
    rows = [
        [name, *(_batch_cell(v, n, c, table.fmt) for v, n, c in zip(
            values, counts, chance, strict=True))]
        for name, values, counts, chance in zip(table.row_names, table.values, table.counts,
                                                table.chance, strict=True)
    ]
    return HtmlTable(["model", *(f"batch {b}" for b in table.batches)], rows,
                     list(table.estimated), frozenset({0}),
                     title=table.title + (" (estimated rows highlighted)"
                                          if any(table.estimated) else ""))


def fits_table(fits: Sequence[EnergyFit]) -> HtmlTable:
    rows = [[
        f.target, f.hardware_id, f.hardware_label, f.meter_source, str(f.n_rows),
        str(f.n_configs), "-" if f.loo is None else f"{f.loo.mape:.1%}",
        "-" if f.loo is None else f"{f.loo.r2_log:.2f}", str(f.n_models),
        "-" if f.lomo is None else f"{f.lomo.mape:.1%}", f.describe(),
    ] for f in fits]
    return HtmlTable(["target", "hardware", "machine", "meter", "runs", "configs",
                      "held-out MAPE (by configuration)", "held-out R2 (log)", "models",
                      "held-out MAPE (by model)", "fitted law"],
                     rows, [f.estimated for f in fits], frozenset({0, 1, 2, 3, 10}))


def windows_table(items: Sequence[WindowAccuracy]) -> HtmlTable:
    rows = [[f"{w.window:.0%}", str(w.n), f"{w.mape:.1%}", f"{w.worst:.1%}"] for w in items]
    return HtmlTable(["window", "runs", "MAPE", "worst"], rows, [w.estimated for w in items])


def environment() -> Environment:
    """Templates from the installed package (package data), HTML-escaped."""
    return Environment(
        loader=PackageLoader("sweeper.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_page(
    path: Path,
    *,
    store_url: str,
    runs: pd.DataFrame,
    figures: Sequence[FigureRef],
    guidelines: Sequence[str],
    not_established: Sequence[str] = (),
    correlations: Sequence[Correlation],
    matrices: Sequence[CorrelationMatrix] = (),
    batch_tables: Sequence[BatchTable] = (),
    fits: Sequence[EnergyFit],
    windows: Sequence[WindowAccuracy],
    exports: Sequence[str],
    notes: Sequence[str] = (),
    front: pd.DataFrame | None = None,
    findings: Sequence[FindingCheck] = (),
) -> Path:
    failed = runs[runs["status"].isin(["failed", "interrupted"])]
    html = environment().get_template(TEMPLATE).render(
        store_url=store_url,
        n_runs=len(runs),
        status_counts=", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items()),
        sweeps=", ".join(sorted(runs["sweep"].dropna().unique())) or "-",
        generated=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
        estimated=bool(runs["estimated"].any()) if not runs.empty else False,
        estimate_means=ESTIMATED,
        guidelines=list(guidelines),
        not_established=list(not_established),
        figures=list(figures),
        correlations=correlations_table(correlations),
        front=None if front is None or not front["on_front"].any() else front_table(front),
        front_accuracy=accuracy_name(front) if front is not None and not front.empty else "",
        findings=findings_table(findings) if findings else None,
        strong=strong_correlations_table(matrices),
        batch_tables=[batch_table(t) for t in batch_tables],
        fits=fits_table(fits),
        windows=windows_table(windows) if windows else None,
        forecast_runs=forecast_runs_table(runs),
        all_runs=runs_table(runs),
        failed=[(r["id"], r["status"], r["error_type"], r["error_message"])
                for _, r in failed.iterrows()],
        exports=list(exports),
        notes=list(notes),
        accuracy_margin=f"{ACCURACY_MARGIN:.0%}",
        chance_margin=f"{CHANCE_MARGIN:g}",
    )
    path.write_text(html, encoding="utf-8")
    return path
