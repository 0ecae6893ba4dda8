"""Matched-pair effects of one factor (batch size, precision, lr) on training energy and
accuracy, with bootstrap intervals.

A batch-size effect compares runs that differ only in batch size (same model, data set,
learning rate, optimiser, epochs, precision, hardware and meter), averaging repeats, so it
never rests on a confounded pair. Pairs that differ only in learning rate are one
configuration (lr does not change the computation) and count once. An effect is a finding
only when its interval excludes zero, and lr is never read as an energy effect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweeper.report.configs import ESTIMATED_NOTE, completed, learnt

# A run's GPU power limit (where the frame has it: sweeper.report.power_limits.with_limits)
# is matched too, so a batch or precision effect never pairs runs at different limits.
MATCH_KEYS = ("model", "dataset", "lr", "optimizer", "epochs", "precision", "batch",
              "hardware_id", "meter_source", "power_limit_w")
# Factors whose change alters the computation, so an energy difference is theirs to claim.
ENERGY_FACTORS = ("batch", "precision")
CI_LEVEL = 0.95
MIN_CONFIGS_FOR_CI = 3


@dataclass(frozen=True)
class PairedChange:
    """Mean change from `low` to `high` of one factor over matched configurations, with
    bootstrap intervals (NaN with fewer than MIN_CONFIGS_FOR_CI configurations)."""

    factor: str
    low: object
    high: object
    n: int  # distinct configurations (matched pairs differing only in lr count once)
    energy_change: float  # relative change of E_tr, high vs low: geometric mean of the ratios
    accuracy_points: float  # percentage points, high - low
    estimated: bool
    model: str | None = None
    machines: int = 1
    energy_ci: tuple[float, float] = (math.nan, math.nan)
    accuracy_ci: tuple[float, float] = (math.nan, math.nan)

    @property
    def energy_finding(self) -> bool:
        """The energy interval exists and excludes zero (and the factor changes compute)."""
        low, high = self.energy_ci
        return self.factor in ENERGY_FACTORS and (low > 0 or high < 0)

    @property
    def accuracy_finding(self) -> bool:
        low, high = self.accuracy_ci
        return low > 0 or high < 0


def ci_text(ci: tuple[float, float], fmt: str) -> str:
    """'95% CI a to b' in `fmt`, or that there is none (bootstrap_ci's NaN)."""
    if not all(math.isfinite(v) for v in ci):
        return "no interval (fewer than 3 values)"
    return f"{CI_LEVEL:.0%} CI {format(ci[0], fmt)} to {format(ci[1], fmt)}"


def bootstrap_ci(
    values: Sequence[float], level: float = CI_LEVEL, resamples: int = 4000,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (or `statistic`, taking axis=1), resampling
    configurations with replacement (seeded, so a report is reproducible); NaN with too few
    values to resample."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if len(data) < MIN_CONFIGS_FOR_CI:
        return math.nan, math.nan
    rng = np.random.default_rng(0)
    means = statistic(data[rng.integers(0, len(data), size=(resamples, len(data)))], axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_change(
    frame: pd.DataFrame, factor: str, low: object, high: object, model: str | None = None
) -> PairedChange | None:
    # A run at chance never enters an energy comparison's mean; lr's accuracy effect keeps
    # it (diverging is what an lr does to accuracy).
    runs = (completed(frame) if factor not in ENERGY_FACTORS else learnt(frame)).dropna(
        subset=["test_accuracy"])
    if model is not None:
        runs = runs[runs["model"] == model]
    keys = [k for k in MATCH_KEYS if k != factor and k in runs]
    metrics = ["energy_train_j", "test_accuracy"]

    def side(value: object) -> pd.DataFrame:
        part = runs[runs[factor] == value]
        return part.groupby(keys, dropna=False)[metrics].mean()

    joined = pd.merge(side(low), side(high), left_index=True, right_index=True,
                      suffixes=("_low", "_high"))
    if joined.empty:
        return None
    pairs = pd.DataFrame({
        "log_ratio": np.log(joined["energy_train_j_high"] / joined["energy_train_j_low"]),
        "points": (joined["test_accuracy_high"] - joined["test_accuracy_low"]) * 100.0,
    }, index=joined.index)
    # Pairs that differ only in lr are the same computation: one configuration.
    config_keys = [k for k in keys if k != "lr"]
    per_config = pairs.groupby(level=config_keys, dropna=False).mean() if factor != "lr" \
        else pairs
    involved = runs[runs[factor].isin([low, high])]
    machines = joined.index.get_level_values("hardware_id").nunique(dropna=False)
    # Ratios average geometrically: one noisy pair cannot dominate, and 2x up and 2x down
    # cancel out.
    log_low, log_high = bootstrap_ci(per_config["log_ratio"])
    return PairedChange(
        factor, low, high, len(per_config), math.exp(float(per_config["log_ratio"].mean())) - 1,
        float(per_config["points"].mean()), bool(involved["estimated"].any()), model,
        int(machines), (math.expm1(log_low), math.expm1(log_high)),
        bootstrap_ci(per_config["points"]),
    )


def _less_more(change: float) -> str:
    return f"{abs(change):.0%} {'less' if change < 0 else 'more'}"


def _points(points: float) -> str:
    if abs(points) < 0.05:
        return "the same accuracy"
    return f"{abs(points):.1f} points {'more' if points > 0 else 'less'} test accuracy"


def _interval(ci: tuple[float, float], fmt: str) -> str:
    if not all(math.isfinite(v) for v in ci):
        return f"too few configurations for a {CI_LEVEL:.0%} interval"
    return f"{CI_LEVEL:.0%} CI {format(ci[0], fmt)} to {format(ci[1], fmt)}"


def _evidence(c: PairedChange) -> str:
    return (f"{c.n} matched configuration{'s' if c.n != 1 else ''}"
            f"{f' on {c.machines} machines' if c.machines > 1 else ''}")


def describe_change(c: PairedChange) -> str:
    scope = f"{c.model}: " if c.model else ""
    name = {"batch": "batch", "precision": "", "lr": "lr"}.get(c.factor, c.factor)
    high = f"{name} {c.high}".strip()
    low = f"{name} {c.low}".strip()
    if c.factor not in ENERGY_FACTORS:
        # lr (and the like) do not change the computation: only accuracy is theirs.
        return (f"{scope}{high} gave {_points(c.accuracy_points)} than {low} "
                f"({_interval(c.accuracy_ci, '+.1f')} points; {_evidence(c)}); energy is "
                f"not compared: {c.factor} does not change the computation")
    text = (f"{scope}{high} used {_less_more(c.energy_change)} training energy than {low} "
            f"({_interval(c.energy_ci, '+.0%')}) for {_points(c.accuracy_points)} "
            f"(geometric mean of {_evidence(c)})")
    return text + (ESTIMATED_NOTE if c.estimated else "")


def factor_changes(frame: pd.DataFrame, factor: str, per_model: bool = True) -> list[PairedChange]:
    """Smallest vs largest value of a factor, overall and per model."""
    runs = completed(frame)
    values = sorted(v for v in runs[factor].dropna().unique())
    if len(values) < 2:
        return []
    low, high = values[0], values[-1]
    if factor == "precision" and "fp32" in values:
        low, high = "fp32", next(v for v in values if v != "fp32")
    out = []
    overall = paired_change(frame, factor, low, high)
    if overall is not None:
        out.append(overall)
    if per_model:
        for model in sorted(runs["model"].unique()):
            change = paired_change(frame, factor, low, high, model=model)
            if change is not None:
                out.append(change)
    return out


def effects(frame: pd.DataFrame) -> list[PairedChange]:
    """Matched-pair effects of batch size (overall and per model), precision and lr."""
    out: list[PairedChange] = []
    for factor in (*ENERGY_FACTORS, "lr"):
        out.extend(factor_changes(frame, factor, per_model=factor == "batch"))
    return out


def is_finding(c: PairedChange) -> bool:
    return c.energy_finding if c.factor in ENERGY_FACTORS else c.accuracy_finding


def not_established(changes: Sequence[PairedChange]) -> list[str]:
    """Effects whose interval spans zero (or that rest on too few configurations): shown
    apart, never as findings."""
    return [describe_change(c) for c in changes if not is_finding(c)]


