"""The study's analyses computed from stored runs: correlations, the energy-accuracy Pareto
front, forecast accuracy, and guideline statements with their numbers.

Correlations rest on distinct configurations (runs differing only in lr, seed or repeat are
averaged first, see configs.py); effects of batch size and precision are matched pairs with
intervals (effects.py) and are stated only when the interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweeper.predict.estimator import EnergyFit
from sweeper.report.configs import ESTIMATED_NOTE, completed, configurations
from sweeper.report.effects import PairedChange, describe_change, effects, is_finding

__all__ = ["completed", "configurations"]


@dataclass(frozen=True)
class Correlation:
    """Pearson (of log values: the relation is a power law) and Spearman (rank) of y on x,
    over n distinct configurations."""

    x: str
    y: str
    n: int
    pearson_log: float
    spearman: float
    estimated: bool


def correlation(frame: pd.DataFrame, x: str, y: str) -> Correlation:
    rows = frame[(frame[x] > 0) & (frame[y] > 0)]
    xs, ys = rows[x].astype(float), rows[y].astype(float)
    pearson = spearman = float("nan")
    if len(rows) >= 3 and xs.nunique() > 1 and ys.nunique() > 1:
        pearson = float(np.corrcoef(np.log(xs), np.log(ys))[0, 1])
        spearman = float(np.corrcoef(xs.rank(), ys.rank())[0, 1])
    return Correlation(x, y, len(rows), pearson, spearman, bool(rows["estimated"].any()))


def correlations(frame: pd.DataFrame) -> list[Correlation]:
    """The paper's pairs: training and inference energy against MACs and MACs per parameter,
    over distinct configurations."""
    runs = configurations(frame)
    pairs = [
        ("macs_per_sample", "energy_per_train_sample_j"),
        ("macs_per_param", "energy_per_train_sample_j"),
        ("params", "energy_per_train_sample_j"),
        ("macs_per_sample", "energy_per_inference_sample_j"),
        ("macs_per_param", "energy_per_inference_sample_j"),
        ("macs_per_sample", "energy_train_j"),
    ]
    return [correlation(runs, x, y) for x, y in pairs]


def pareto_mask(energy_j: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """True where no other point has less-or-equal energy and higher-or-equal accuracy
    (and is strictly better in one)."""
    e = np.asarray(energy_j, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    mask = np.ones(len(e), dtype=bool)
    for i in range(len(e)):
        dominated = (e <= e[i]) & (a >= a[i]) & ((e < e[i]) | (a > a[i]))
        mask[i] = not dominated.any()
    return mask


@dataclass(frozen=True)
class WindowAccuracy:
    window: float
    n: int
    mape: float  # mean |forecast - actual| / actual, as a fraction
    worst: float
    estimated: bool = False


def forecast_accuracy(frame: pd.DataFrame) -> list[WindowAccuracy]:
    """Error of the in-run forecast against the measured E_tr, by profiling window."""
    runs = completed(frame).dropna(subset=["forecast_error", "forecast_window"])
    out = []
    for window, group in runs.groupby("forecast_window"):
        errors = group["forecast_error"].abs()
        out.append(WindowAccuracy(float(window), len(group), float(errors.mean()),
                                  float(errors.max()), bool(group["estimated"].any())))
    return out


def inference_break_even(frame: pd.DataFrame) -> tuple[float, int, bool] | None:
    """Median number of inference samples after which inference has used as much energy as
    training (E_tr / E_in per sample), the run count, and whether any is estimated."""
    runs = completed(frame)
    runs = runs[runs["energy_per_inference_sample_j"] > 0]
    if runs.empty:
        return None
    samples = runs["energy_train_j"] / runs["energy_per_inference_sample_j"]
    return float(samples.median()), len(runs), bool(runs["estimated"].any())


def best_tradeoff(frame: pd.DataFrame, tolerance_points: float = 1.0) -> str | None:
    """The cheapest run within `tolerance_points` of the most accurate one (same hardware)."""
    runs = completed(frame).dropna(subset=["accuracy"])
    if len(runs) < 2:
        return None
    best = runs.loc[runs["accuracy"].idxmax()]
    same = runs[(runs["hardware_id"] == best["hardware_id"])
                & (runs["meter_source"] == best["meter_source"])]
    close = same[same["accuracy"] >= best["accuracy"] - tolerance_points / 100.0]
    cheap = close.loc[close["energy_train_j"].idxmin()]
    ratio = best["energy_train_j"] / cheap["energy_train_j"]
    text = (
        f"the most accurate run (#{best['id']} {_label(best)}, {best['accuracy']:.1%}) used "
        f"{joules(best['energy_train_j'])} to train; run #{cheap['id']} ({_label(cheap)}) came "
        f"within {tolerance_points:g} point(s) ({cheap['accuracy']:.1%}) with "
        f"{joules(cheap['energy_train_j'])}"
    )
    if cheap["id"] != best["id"] and math.isfinite(ratio):
        text += f", {ratio:.1f}x less energy"
    return text + (ESTIMATED_NOTE if bool(close["estimated"].any()) else "")


def joules(value: float) -> str:
    """Energy with a readable unit and three significant digits."""
    if value >= 3.6e5:
        return f"{value / 3.6e6:.3g} kWh"
    if value >= 1e3:
        return f"{value / 1e3:.3g} kJ"
    if value >= 1.0:
        return f"{value:.3g} J"
    return f"{value * 1e3:.3g} mJ"


def _label(row: pd.Series) -> str:
    return f"{row['model']} b{row['batch']} {row['precision']} lr {row['lr']:g}"


def guidelines(
    frame: pd.DataFrame,
    fits: Sequence[EnergyFit] = (),
    correlations_: Sequence[Correlation] = (),
    changes: Sequence[PairedChange] | None = None,
) -> list[str]:
    """Plain statements computed from the data; each names its evidence and marks estimates.
    An effect (`changes`, computed from the frame if not given) is stated only when its
    interval excludes zero."""
    changes = effects(frame) if changes is None else changes
    out: list[str] = [describe_change(c) for c in changes if is_finding(c)]
    trade = best_tradeoff(frame)
    if trade:
        out.append(trade[0].upper() + trade[1:])
    for c in correlations_:
        if c.y == "energy_per_train_sample_j" and c.x in ("macs_per_sample", "macs_per_param") \
                and math.isfinite(c.spearman):
            name = "MACs" if c.x == "macs_per_sample" else "MACs per parameter"
            out.append(
                f"Training energy per sample vs {name}: Spearman {c.spearman:+.2f}, Pearson "
                f"(log-log) {c.pearson_log:+.2f} over {c.n} configurations"
                + (ESTIMATED_NOTE if c.estimated else "")
            )
    for w in forecast_accuracy(frame):
        out.append(
            f"A forecast from the first {w.window:.0%} of training steps was off by "
            f"{w.mape:.1%} on average (worst {w.worst:.1%}) over {w.n} runs"
            + (ESTIMATED_NOTE if w.estimated else "")
        )
    for fit in fits:
        if fit.loo is not None:
            out.append(
                f"Estimating {fit.target} energy per sample from model size, batch and "
                f"precision on hardware {fit.hardware_id} ({fit.meter_source}): held-out "
                f"MAPE {fit.loo.mape:.1%}, R^2 (log) {fit.loo.r2_log:.2f} over "
                f"{fit.loo.n_configs} configurations"
                + ("" if fit.lomo is None else
                   f"; for a model never run (each of {fit.lomo.n_configs} models held out "
                   f"in turn) MAPE {fit.lomo.mape:.1%}")
                + (ESTIMATED_NOTE if fit.estimated else "")
            )
    even = inference_break_even(frame)
    if even is not None:
        samples, n, estimated = even
        out.append(
            f"After about {samples:,.0f} predictions (median over {n} runs) a model has used as "
            "much energy in inference as it took to train it"
            + (ESTIMATED_NOTE if estimated else "")
        )
    return out
