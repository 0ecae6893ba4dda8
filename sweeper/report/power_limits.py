"""Energy, time and accuracy against the GPU power limit (the study's guideline 5).

A run's limit is read from its hardware record: ``gpu_power`` where sweeper set one
(``gpu.power_limit``), else the limit the card had (``gpus``). Each capped run is paired
with the run of the same configuration, seed and repeat on the same machine and meter at
the highest limit measured (usually the card's default): energy saved and time added are
ratios of those pairs, with bootstrap intervals over the pairs, per model and batch and
over all of them. A guideline line is stated only where the energy interval excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from sweeper.report.configs import ESTIMATED_NOTE, completed
from sweeper.report.effects import bootstrap_ci, ci_text
from sweeper.report.plotting import counts, model_colors, new_figure, save, save_empty
from sweeper.store import Run, Store

PAIR_KEYS = ("model", "dataset", "batch", "lr", "optimizer", "epochs", "precision", "seed",
             "repeat", "hardware_id", "meter_source")
COLUMNS = ("model", "batch", "limit_w", "fraction", "baseline_w", "n", "energy_saved",
           "energy_saved_low", "energy_saved_high", "time_added", "time_added_low",
           "time_added_high", "accuracy_points", "accuracy_low", "accuracy_high", "estimated")


def run_limit(hardware: dict[str, Any] | None) -> tuple[float, float, bool]:
    """(mean limit W over the run's GPUs, fraction of their default, set by sweeper); NaN
    where the record has no GPU limit (CPU runs)."""
    hardware = hardware or {}
    power = hardware.get("gpu_power") or {}
    gpus = [g for g in (power.get("gpus") or {}).values() if g.get("applied_w")]
    if gpus:
        limit = float(np.mean([g["applied_w"] for g in gpus]))
        default = float(np.mean([g["default_w"] for g in gpus]))
        return limit, limit / default, True
    found = [float(g["power_limit_w"]) for g in (hardware.get("gpus") or {}).values()
             if g.get("power_limit_w")]
    return (float(np.mean(found)) if found else math.nan), math.nan, False


def load_limits(store: Store, run_ids: list[int]) -> pd.DataFrame:
    """id, power_limit_w, power_limit_fraction, power_limit_set per run."""
    records = []
    with store.session() as session:
        for start in range(0, len(run_ids), 500):
            query = select(Run.id, Run.hardware).where(Run.id.in_(run_ids[start:start + 500]))
            for run_id, hardware in session.execute(query):
                records.append((int(run_id), *run_limit(hardware)))
    return pd.DataFrame.from_records(records, columns=[
        "id", "power_limit_w", "power_limit_fraction", "power_limit_set"])


@dataclass(frozen=True)
class _Pair:
    model: str
    batch: int
    limit_w: float
    fraction: float
    baseline_w: float
    energy_ratio: float
    time_ratio: float
    accuracy_points: float
    estimated: bool


def _pairs(runs: pd.DataFrame) -> list[_Pair]:
    frame = completed(runs).dropna(subset=["power_limit_w", "train_duration_s"])
    if frame.empty or frame["power_limit_w"].nunique() < 2:
        return []
    keyed = frame.groupby([*PAIR_KEYS, "power_limit_w"], dropna=False).agg(
        energy=("energy_train_j", "mean"), time=("train_duration_s", "mean"),
        accuracy=("selection_accuracy", "mean"), fraction=("power_limit_fraction", "mean"),
        estimated=("estimated", "any")).reset_index()
    out = []
    for key, group in keyed.groupby(list(PAIR_KEYS), dropna=False):
        if len(group) < 2:
            continue
        base = group.loc[group["power_limit_w"].idxmax()]
        for _, row in group[group["power_limit_w"] < base["power_limit_w"]].iterrows():
            out.append(_Pair(
                str(key[0]), int(key[2]), float(row["power_limit_w"]), float(row["fraction"]),
                float(base["power_limit_w"]), float(row["energy"] / base["energy"]),
                float(row["time"] / base["time"]),
                100.0 * float(row["accuracy"] - base["accuracy"]),
                bool(row["estimated"] or base["estimated"])))
    return out


def _summary(pairs: list[_Pair], model: str, batch: object) -> dict[str, Any]:
    saved = [1.0 - p.energy_ratio for p in pairs]
    added = [p.time_ratio - 1.0 for p in pairs]
    points = [p.accuracy_points for p in pairs if math.isfinite(p.accuracy_points)]
    e_lo, e_hi = bootstrap_ci(saved)
    t_lo, t_hi = bootstrap_ci(added)
    a_lo, a_hi = bootstrap_ci(points)
    return {"model": model, "batch": batch, "limit_w": pairs[0].limit_w,
            "fraction": pairs[0].fraction, "baseline_w": pairs[0].baseline_w, "n": len(pairs),
            "energy_saved": float(np.mean(saved)), "energy_saved_low": e_lo,
            "energy_saved_high": e_hi, "time_added": float(np.mean(added)),
            "time_added_low": t_lo, "time_added_high": t_hi,
            "accuracy_points": float(np.mean(points)) if points else math.nan,
            "accuracy_low": a_lo, "accuracy_high": a_hi,
            "estimated": any(p.estimated for p in pairs)}


def limit_effects(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model, batch and limit (and per limit over all, model "all"): energy saved and
    time added against the highest limit, with their intervals (NaN under 3 pairs)."""
    pairs = _pairs(runs)
    rows = []
    groups: dict[tuple[Any, ...], list[_Pair]] = {}
    for p in pairs:
        groups.setdefault((p.model, p.batch, p.limit_w, p.baseline_w), []).append(p)
        groups.setdefault(("all", "all", p.limit_w, p.baseline_w), []).append(p)
    for (model, batch, _, _), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rows.append(_summary(group, model, batch))
    return pd.DataFrame.from_records(rows, columns=list(COLUMNS))


def _pct_ci(value: float, low: float, high: float) -> str:
    text = f"{value:+.1%}"
    if math.isfinite(low):
        text += f" ({ci_text((low, high), '+.1%')})"
    return text


def guideline_lines(effects: pd.DataFrame) -> list[str]:
    """The power-capping guideline, checked: one line per limit over all models where the
    energy saved has an interval excluding zero; else what the runs show, marked."""
    out = []
    for _, e in effects[effects["model"] == "all"].iterrows():
        share = f" ({e['fraction']:.2f} of the default)" if math.isfinite(e["fraction"]) else ""
        established = e["energy_saved_low"] > 0 or e["energy_saved_high"] < 0
        saved = _pct_ci(e["energy_saved"], e["energy_saved_low"], e["energy_saved_high"])
        added = _pct_ci(e["time_added"], e["time_added_low"], e["time_added_high"])
        text = (f"GPU power limit {e['limit_w']:g} W{share} vs {e['baseline_w']:g} W: "
                f"training energy saved {saved}, time added {added}, "
                f"accuracy {e['accuracy_points']:+.2f} points over {e['n']} matched run "
                "pair(s)")
        if not established:
            text += " - not established (interval includes zero or under 3 pairs)"
        out.append(text + (ESTIMATED_NOTE if e["estimated"] else ""))
    return out


def energy_time_figure(effects: pd.DataFrame, path: Path, n_label: str = "") -> Path:
    """Energy saved against time added per model, batch and limit, with intervals
    (`n_label`: the runs and the energy basis, as every figure's title states them)."""
    rows = effects[effects["model"] != "all"]
    if rows.empty:
        return save_empty(path, "Energy vs time under a GPU power limit",
                          "no runs at two or more power limits (gpu.power_limit=0.6,0.8,1.0)")
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    colors = model_colors(sorted(rows["model"].unique()))
    for _, r in rows.iterrows():
        xerr = [[r["time_added"] - r["time_added_low"]], [r["time_added_high"] - r["time_added"]]]
        yerr = [[r["energy_saved"] - r["energy_saved_low"]],
                [r["energy_saved_high"] - r["energy_saved"]]]
        ax.errorbar(100 * r["time_added"], 100 * r["energy_saved"],
                    xerr=None if not math.isfinite(xerr[0][0]) else np.array(xerr) * 100,
                    yerr=None if not math.isfinite(yerr[0][0]) else np.array(yerr) * 100,
                    fmt="o", color=colors[r["model"]], capsize=3)
        ax.annotate(f"{r['model']} b{r['batch']} {r['limit_w']:g} W",
                    (100 * r["time_added"], 100 * r["energy_saved"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("training time added vs the highest limit (%)")
    ax.set_ylabel("training energy saved (%)")
    ax.set_title("GPU power limit: energy saved vs time added"
                 + (f" ({n_label})" if n_label else ""))
    return save(fig, path)


@dataclass(frozen=True)
class PowerLimitSection:
    effects: pd.DataFrame  # empty: no runs at two limits, and the report shows nothing
    guidelines: list[str]
    figure: Path | None
    caption: str = ("Training energy saved against training time added by each GPU power "
                    "limit, per model and batch, against the same configuration at the "
                    "highest limit measured; bars: 95% bootstrap intervals over matched "
                    "runs (seeds, repeats) where there are 3 or more.")


LIMIT_COLUMNS = ("power_limit_w", "power_limit_fraction", "power_limit_set")


def with_limits(store: Store, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their GPU power limit (LIMIT_COLUMNS; NaN for CPU runs), so every
    analysis can keep runs at different limits apart."""
    if all(c in runs for c in LIMIT_COLUMNS):
        return runs
    ids = [int(i) for i in runs["id"]]
    limits = load_limits(store, ids) if ids else pd.DataFrame(columns=["id", *LIMIT_COLUMNS])
    return runs.merge(limits, on="id", how="left")


def capped_by_sweeper(runs: pd.DataFrame) -> pd.Series:
    """Runs under a limit sweeper set below the card's default: their joules and time are
    not the card's as fitted (the estimator leaves them out, as its store reader does)."""
    if "power_limit_set" not in runs:
        return pd.Series(False, index=runs.index)
    fraction = pd.to_numeric(runs["power_limit_fraction"], errors="coerce")
    return runs["power_limit_set"].fillna(False).astype(bool) & ~np.isclose(fraction, 1.0)


def power_limit_section(store: Store, runs: pd.DataFrame, out_dir: Path) -> PowerLimitSection:
    """Everything the report shows about power limits, from the runs it reports."""
    merged = with_limits(store, runs)
    effects = limit_effects(merged)
    figure = None if effects.empty else energy_time_figure(
        effects, out_dir / "power_limit.png", counts(merged.dropna(subset=["power_limit_w"])))
    return PowerLimitSection(effects, guideline_lines(effects), figure)
