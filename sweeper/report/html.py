"""The report's HTML page: one self-contained file next to its PNG figures."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.predict.estimator import EnergyFit
from sweeper.report.analysis import Correlation, WindowAccuracy

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
tr.estimated td { background: #fff8e1; } .estimate { color: #a66b00; font-weight: bold; }
.banner { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em 1em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
"""


@dataclass(frozen=True)
class FigureRef:
    file: str
    title: str
    note: str = ""


def _cell(value: Any, fmt: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt and isinstance(value, int | float):
        return format(value, fmt)
    return str(value)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    estimated: Sequence[bool] | None = None,
    text_columns: Sequence[int] = (),
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        marked = estimated is not None and estimated[i]
        cells = "".join(
            f'<td class="text">{escape(c)}</td>' if j in text_columns else f"<td>{escape(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f'<tr class="estimated">{cells}</tr>' if marked else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


RUN_TABLE: list[tuple[str, str, str]] = [  # header, column, format
    ("run", "id", ""), ("sweep", "sweep", ""), ("model", "model", ""),
    ("dataset", "dataset", ""), ("batch", "batch", ""), ("lr", "lr", "g"),
    ("prec", "precision", ""), ("epochs", "epochs", ""), ("status", "status", ""),
    ("accuracy", "accuracy", ".3f"), ("E_tr (J)", "energy_train_j", ".1f"),
    ("E_in (J)", "energy_inference_j", ".2f"),
    ("E_in/sample (mJ)", "energy_per_inference_sample_mj", ".3f"),
    ("total (J)", "energy_total_j", ".1f"), ("CO2 (g)", "co2_g", ".3f"),
    ("MACs", "macs_per_sample", ".3g"), ("params", "params", ".3g"),
    ("forecast err", "forecast_error", "+.1%"), ("meter", "meter_source", ""),
    ("energy is", "energy_kind", ""),
]


def runs_table(runs: pd.DataFrame) -> str:
    frame = runs.assign(
        energy_per_inference_sample_mj=runs["energy_per_inference_sample_j"] * 1e3,
        energy_kind=runs["estimated"].map({True: "ESTIMATE", False: "measured"}),
    )
    rows = [[_cell(r[c], f) for _, c, f in RUN_TABLE] for _, r in frame.iterrows()]
    text = [i for i, (_, c, _) in enumerate(RUN_TABLE)
            if c in ("sweep", "model", "dataset", "precision", "status", "meter_source",
                     "energy_kind")]
    return table([h for h, _, _ in RUN_TABLE], rows, list(frame["estimated"]), text)


def forecast_runs_table(runs: pd.DataFrame) -> str:
    rows = runs[runs["status"] == "forecast"]
    if rows.empty:
        return ""
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
    return (
        "<h2>Forecast-only runs (<code>mode=forecast</code>)</h2>"
        + table([h for h, _ in columns], body, list(rows["estimated"]), (1, 10))
    )


def correlations_table(items: Sequence[Correlation]) -> str:
    rows = [[c.y, c.x, str(c.n), _cell(c.pearson_log, "+.2f"), _cell(c.spearman, "+.2f"),
             "ESTIMATE" if c.estimated else "measured"] for c in items]
    return table(["energy", "against", "runs", "Pearson (log-log)", "Spearman", "energy is"],
                 rows, [c.estimated for c in items], (0, 1, 5))


def fits_table(fits: Sequence[EnergyFit]) -> str:
    rows, marks = [], []
    for f in fits:
        rows.append([
            f.target, f.hardware_id, f.hardware_label, f.meter_source, str(f.n_rows),
            str(f.n_configs), "-" if f.loo is None else f"{f.loo.mape:.1%}",
            "-" if f.loo is None else f"{f.loo.r2_log:.2f}", f.describe(),
        ])
        marks.append(f.estimated)
    return table(["target", "hardware", "machine", "meter", "runs", "configs",
                  "held-out MAPE", "held-out R2 (log)", "fitted law"],
                 rows, marks, (0, 1, 2, 3, 8))


def windows_table(items: Sequence[WindowAccuracy]) -> str:
    rows = [[f"{w.window:.0%}", str(w.n), f"{w.mape:.1%}", f"{w.worst:.1%}"] for w in items]
    return table(["window", "runs", "MAPE", "worst"], rows)


def write_page(
    path: Path,
    *,
    store_url: str,
    runs: pd.DataFrame,
    figures: Sequence[FigureRef],
    guidelines: Sequence[str],
    correlations: Sequence[Correlation],
    fits: Sequence[EnergyFit],
    windows: Sequence[WindowAccuracy],
    exports: Sequence[str],
    notes: Sequence[str] = (),
) -> Path:
    estimated = bool(runs["estimated"].any()) if not runs.empty else False
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sweeper report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>sweeper report</h1>",
        f"<p>Store <code>{escape(store_url)}</code>; {len(runs)} run(s) ({escape(counts)}); "
        f"sweeps: {escape(', '.join(sorted(runs['sweep'].dropna().unique())) or '-')}; "
        f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.</p>",
        *(f"<p>{escape(n)}</p>" for n in notes),
    ]
    if estimated:
        parts.append(
            "<p class='banner'><span class='estimate'>Estimates:</span> some energy figures "
            "come from the <code>estimate</code> meter (CPU utilisation x rated power, no "
            "NVML or RAPL reading). They are marked as estimates in every figure (hollow "
            "markers, hatched bars, '(estimated)' titles) and table (highlighted rows, "
            "'energy is' column). Treat them as relative, not as measurements.</p>"
        )
    parts.append("<h2>Guidelines from the data</h2><ul>")
    parts += [f"<li>{escape(g)}</li>" for g in guidelines] or ["<li>not enough runs</li>"]
    parts.append("</ul><h2>Figures</h2>")
    for f in figures:
        note = f"<br><small>{escape(f.note)}</small>" if f.note else ""
        parts.append(f"<figure><img src='{escape(f.file)}' alt='{escape(f.title)}'>"
                     f"<figcaption>{escape(f.title)}{note}</figcaption></figure>")
    parts.append("<h2>Correlations</h2>" + correlations_table(correlations))
    parts.append("<h2>Energy estimated from model size (leave-one-configuration-out)</h2>"
                 + fits_table(fits))
    if windows:
        parts.append("<h2>Forecast from a profile</h2>" + windows_table(windows))
    parts.append(forecast_runs_table(runs))
    parts.append("<h2>All runs</h2>" + runs_table(runs))
    failed = runs[runs["status"].isin(["failed", "interrupted"])]
    if not failed.empty:
        parts.append("<h2>Failed and interrupted runs</h2><ul>")
        parts += [f"<li>run {r['id']} {escape(str(r['status']))}: "
                  f"{escape(str(r['error_type']))}: {escape(str(r['error_message']))}</li>"
                  for _, r in failed.iterrows()]
        parts.append("</ul>")
    links = " ".join(f"<a href='{escape(e)}'>{escape(e)}</a>" for e in exports)
    parts.append(f"<h2>Exports</h2><p>{links}</p></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
