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

from sweeper.pareto import epsilon_front
from sweeper.predict.estimator import EnergyFit
from sweeper.report.configs import (
    ESTIMATED_NOTE,
    MACHINE_KEYS,
    completed,
    configurations,
    learnt,
)
from sweeper.report.effects import PairedChange, describe_change, effects, is_finding

__all__ = ["completed", "configurations"]


CI_RESAMPLES = 2000
TRANSFORMS = ("log-log", "raw")


@dataclass(frozen=True)
class Correlation:
    """Pearson (on `transform`ed values: log-log for the power laws of energy against size)
    and Spearman (ranks: the same under either transform) of y on x over n distinct
    configurations, each with a 95% bootstrap interval (configurations resampled)."""

    x: str
    y: str
    n: int
    transform: str
    pearson: float
    spearman: float
    pearson_ci: tuple[float, float]
    spearman_ci: tuple[float, float]
    estimated: bool
    machine: str = ""  # "hardware (meter)": energy is compared on one machine and meter

    def describe(self) -> str:
        """The one wording of a correlation, in figures, tables and guidelines alike."""
        return (f"Pearson ({self.transform}) {_r(self.pearson)} {_ci(self.pearson_ci)}, "
                f"Spearman {_r(self.spearman)} {_ci(self.spearman_ci)}, "
                f"n={self.n} configurations" + (f" on {self.machine}" if self.machine else ""))


def _r(value: float) -> str:
    return f"{value:+.2f}" if math.isfinite(value) else "n/a"


def _ci(ci: tuple[float, float]) -> str:
    if not all(math.isfinite(v) for v in ci):
        return "[no CI]"
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of a with the same row of b (NaN where a row is constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks within each row, ties averaged (as Spearman's definition has them)."""
    return pd.DataFrame(values).rank(axis=1).to_numpy()


def bootstrap_correlation(
    xs: np.ndarray, ys: np.ndarray, level: float = 0.95, resamples: int = CI_RESAMPLES
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile bootstrap intervals of (Pearson, Spearman), seeded for a reproducible
    report; resamples with a constant column (no correlation) are left out."""
    n = len(xs)
    nan = (math.nan, math.nan)
    if n < 4:
        return nan, nan
    index = np.random.default_rng(0).integers(0, n, size=(resamples, n))
    bx, by = xs[index], ys[index]
    tail = (1.0 - level) / 2.0 * 100.0
    out = []
    for values in (_row_corr(bx, by), _row_corr(_ranks(bx), _ranks(by))):
        values = values[np.isfinite(values)]
        if len(values) < resamples // 2:
            out.append(nan)
            continue
        low, high = np.percentile(values, [tail, 100.0 - tail])
        out.append((float(low), float(high)))
    return out[0], out[1]


def correlation(
    frame: pd.DataFrame, x: str, y: str, transform: str = "log-log", machine: str = ""
) -> Correlation:
    """Over the rows with both values (positive ones for log-log)."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform {transform!r}: use one of {', '.join(TRANSFORMS)}")
    rows = frame.dropna(subset=[x, y])
    if transform == "log-log":
        rows = rows[(rows[x] > 0) & (rows[y] > 0)]
    xs, ys = rows[x].to_numpy(float), rows[y].to_numpy(float)
    if transform == "log-log":
        xs, ys = np.log(xs), np.log(ys)
    pearson = spearman = math.nan
    pearson_ci = spearman_ci = (math.nan, math.nan)
    if len(rows) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
        pearson = float(np.corrcoef(xs, ys)[0, 1])
        spearman = float(np.corrcoef(_ranks(xs[None, :])[0], _ranks(ys[None, :])[0])[0, 1])
        pearson_ci, spearman_ci = bootstrap_correlation(xs, ys)
    return Correlation(x, y, len(rows), transform, pearson, spearman, pearson_ci, spearman_ci,
                       bool(rows["estimated"].any()), machine)


def machine_name(hardware_id: object, meter_source: object) -> str:
    return f"{hardware_id} ({meter_source})"


def correlations(frame: pd.DataFrame) -> list[Correlation]:
    """The paper's pairs: training and inference energy against MACs and MACs per parameter,
    over the distinct configurations of each machine and meter (energies from different
    machines or meters are not pooled), Pearson on log-log values; most configurations
    first."""
    runs = configurations(frame)
    pairs = [
        ("macs_per_sample", "energy_per_train_sample_j"),
        ("macs_per_param", "energy_per_train_sample_j"),
        ("params", "energy_per_train_sample_j"),
        ("macs_per_sample", "energy_per_inference_sample_j"),
        ("macs_per_param", "energy_per_inference_sample_j"),
        ("macs_per_sample", "energy_train_j"),
    ]
    groups = sorted(runs.groupby(list(MACHINE_KEYS), dropna=False),
                    key=lambda item: (-len(item[1]), str(item[0])))
    return [correlation(group, x, y, machine=machine_name(*key))
            for key, group in groups for x, y in pairs]


def energy_accuracy_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Completed runs with a selection accuracy, flagged `on_front` by the uncertainty-aware
    front of sweeper.pareto (chosen on `selection_accuracy`: validation, else test), one
    front per machine and meter (their energies are not comparable), cheapest first."""
    runs = completed(frame).dropna(subset=["selection_accuracy"])
    runs = runs[runs["energy_train_j"] > 0].assign(on_front=False)
    for _, group in runs.groupby(["hardware_id", "meter_source"], dropna=False):
        mask = epsilon_front(group["selection_accuracy"], group["energy_train_j"],
                             group["energy_train_uncertainty_j"], group["at_chance"])
        runs.loc[group.index, "on_front"] = mask
    return runs.sort_values(["hardware_id", "meter_source", "energy_train_j", "id"])


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


def break_even_samples(frame: pd.DataFrame) -> pd.Series:
    """Per run that learnt: the inference samples after which inference has used as much
    energy as training did (E_tr / E_in per sample), with the runs' `estimated` flags."""
    runs = learnt(frame)
    runs = runs[runs["energy_per_inference_sample_j"] > 0]
    return (runs["energy_train_j"] / runs["energy_per_inference_sample_j"]).rename(
        "samples").to_frame().assign(estimated=runs["estimated"])


def inference_break_even(frame: pd.DataFrame) -> tuple[float, int, bool] | None:
    """Median number of inference samples after which inference has used as much energy as
    training, the run count, and whether any is estimated."""
    even = break_even_samples(frame)
    if even.empty:
        return None
    return float(even["samples"].median()), len(even), bool(even["estimated"].any())


def accuracy_name(runs: pd.DataFrame) -> str:
    """What `selection_accuracy` is for these runs: 'val accuracy', 'test accuracy (no
    validation split)' or both."""
    sets = set(runs["selection_set"].dropna())
    if sets == {"val"}:
        return "val accuracy"
    if sets == {"test"}:
        return "test accuracy (no validation split)"
    return "val accuracy (test where a run has no validation split)"


def best_tradeoff(frame: pd.DataFrame, tolerance_points: float = 1.0) -> str | None:
    """The cheapest run within `tolerance_points` of the most accurate one (same hardware),
    chosen on selection accuracy, test accuracy quoted beside it."""
    runs = learnt(frame).dropna(subset=["selection_accuracy"])
    if len(runs) < 2:
        return None
    best = runs.loc[runs["selection_accuracy"].idxmax()]
    same = runs[(runs["hardware_id"] == best["hardware_id"])
                & (runs["meter_source"] == best["meter_source"])]
    close = same[same["selection_accuracy"] >= best["selection_accuracy"]
                 - tolerance_points / 100.0]
    cheap = close.loc[close["energy_train_j"].idxmin()]
    ratio = best["energy_train_j"] / cheap["energy_train_j"]
    name = accuracy_name(runs)

    def acc(row: pd.Series) -> str:
        text = f"{name.split(' (')[0]} {row['selection_accuracy']:.1%}"
        if row["selection_set"] == "val" and pd.notna(row["test_accuracy"]):
            text += f", test {row['test_accuracy']:.1%}"
        return text

    text = (f"the most accurate run by {name} (#{best['id']} {_label(best)}, {acc(best)}) "
            f"used {joules(best['energy_train_j'])} to train; ")
    if cheap["id"] == best["id"]:
        text += f"no cheaper run on its machine came within {tolerance_points:g} point(s)"
    else:
        text += (f"run #{cheap['id']} ({_label(cheap)}) came within {tolerance_points:g} "
                 f"point(s) ({acc(cheap)}) with {joules(cheap['energy_train_j'])}")
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
            out.append(f"Training energy per sample vs {name}: {c.describe()}"
                       + (ESTIMATED_NOTE if c.estimated else ""))
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
                f"precision on hardware {fit.hardware_id} ({fit.meter_source}), law "
                f"{fit.law}: held-out "
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
