"""The study's findings (shared/paper-notes.md) checked on the user's runs: for each, the
number measured here with its 95% interval and n, whether it holds here, and the paper's
own figure where one is known (mostly none is: only the abstract and the released code
could be read, and the notebooks carry no outputs).

Thresholds, stated in every line: a profile "predicts the run" when the upper end of the
mean absolute forecast error's interval is within FORECAST_TOLERANCE; size "predicts
energy" when Spearman's interval excludes zero and the point is at least the study's
"strong" 0.7; batch size "changes energy" when the matched change's interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweeper.report.analysis import Correlation, break_even_samples, forecast_accuracy
from sweeper.report.configs import ESTIMATED_NOTE, completed
from sweeper.report.effects import PairedChange, bootstrap_ci, ci_text

FORECAST_TOLERANCE = 0.10
STRONG = 0.7
NO_FIGURE = "paper: no figure known (only its abstract and code could be read)"


@dataclass(frozen=True)
class FindingCheck:
    finding: str  # the study's claim
    measured: str  # the number here, with interval and n
    verdict: str  # holds | does not hold | not established | not testable here
    paper: str  # the paper's own figure, or that none is known

    def line(self) -> str:
        return f"{self.finding}: {self.measured}. {self.verdict.capitalize()} here; {self.paper}."


def _mark(estimated: bool) -> str:
    return ESTIMATED_NOTE if estimated else ""


def profile_check(runs: pd.DataFrame) -> FindingCheck:
    finding = "1. A short profile predicts the whole run's training energy"
    done = completed(runs).dropna(subset=["forecast_error"])
    if done.empty:
        return FindingCheck(finding, "no completed run has a forecast", "not testable",
                            "paper: no error figure known")
    errors = done["forecast_error"].abs().to_numpy(float)
    ci = bootstrap_ci(errors)
    windows = ", ".join(f"{w.window:.0%}" for w in forecast_accuracy(runs))
    measured = (f"mean |forecast - actual| / actual {errors.mean():.1%} ({ci_text(ci, '.1%')}), "
                f"n={len(errors)} runs, profiling window(s) {windows}"
                + _mark(bool(done["estimated"].any())))
    if not math.isfinite(ci[1]):
        verdict = "not established"
    elif ci[1] <= FORECAST_TOLERANCE:
        verdict = f"holds (error within {FORECAST_TOLERANCE:.0%})"
    else:
        verdict = f"does not hold (error may exceed {FORECAST_TOLERANCE:.0%})"
    return FindingCheck(finding, measured, verdict, "paper: no error figure known")


def size_check(items: Sequence[Correlation], name: str, number: str) -> FindingCheck:
    """On the machine and meter with the most configurations (energy is not pooled across
    machines); the others are in the correlations table."""
    finding = f"{number}. {name} predict training energy per sample"
    usable = sorted((c for c in items if math.isfinite(c.spearman)), key=lambda c: -c.n)
    if not usable:
        return FindingCheck(finding, "fewer than 3 configurations with distinct values",
                            "not testable", NO_FIGURE)
    c = usable[0]
    others = f"; {len(usable) - 1} other machine(s) in the correlations table" \
        if len(usable) > 1 else ""
    low = c.spearman_ci[0]
    if not math.isfinite(low) or low <= 0:
        verdict = "not established (the interval reaches zero)"
    elif c.spearman >= STRONG:
        verdict = f"holds (Spearman >= {STRONG}, the study's 'strong')"
    else:
        verdict = f"partly (positive, weaker than the study's 'strong' {STRONG})"
    return FindingCheck(finding, c.describe() + others + _mark(c.estimated), verdict,
                        "paper: |r| >= 0.7 called strong, no value known")


def batch_check(changes: Sequence[PairedChange]) -> FindingCheck:
    finding = "3. Batch size changes energy per sample"
    overall = next((c for c in changes if c.factor == "batch" and c.model is None), None)
    if overall is None:
        return FindingCheck(finding, "no matched runs differing only in batch size",
                            "not testable", NO_FIGURE)
    measured = (f"batch {overall.high} vs {overall.low}: {overall.energy_change:+.0%} training "
                f"energy per sample ({ci_text(overall.energy_ci, '+.0%')}), n={overall.n} matched "
                "configurations" + _mark(overall.estimated))
    verdict = "holds" if overall.energy_finding else "not established (the interval spans zero)"
    return FindingCheck(finding, measured, verdict, NO_FIGURE)


def inference_check(runs: pd.DataFrame) -> FindingCheck:
    finding = "4. Over a deployment, inference can exceed training energy"
    table = break_even_samples(runs)
    if table.empty:
        return FindingCheck(finding, "no completed run with inference energy", "not testable",
                            NO_FIGURE)
    even = table["samples"].to_numpy(float)
    ci = bootstrap_ci(even, statistic=np.median)
    measured = (f"inference energy equals training energy after {np.median(even):,.0f} "
                f"predictions (median; {ci_text(ci, ',.0f')}), n={len(even)} runs"
                + _mark(bool(table["estimated"].any())))
    return FindingCheck(finding, measured,
                        "holds for any deployment serving more predictions than that",
                        NO_FIGURE)


def capping_check(power_effects: pd.DataFrame | None = None) -> FindingCheck:
    """From the report's power-limit section (sweeper.report.power_limits): the lowest limit
    measured against the highest, over every matched pair of runs."""
    finding = "5. GPU power capping saves energy at a small cost in time"
    paper = ("paper: no capping code in its release; the authors' related FROST work reports "
             "savings of up to 26.4%")
    rows = (power_effects[power_effects["model"] == "all"]
            if power_effects is not None and not power_effects.empty else pd.DataFrame())
    if rows.empty:
        return FindingCheck(finding, "no runs of one configuration at two or more GPU power "
                            "limits in this store (gpu.power_limit=0.6,0.8,1.0 measures them)",
                            "not testable", paper)
    low = rows.loc[rows["limit_w"].idxmin()]
    saved = (float(low["energy_saved_low"]), float(low["energy_saved_high"]))
    added = (float(low["time_added_low"]), float(low["time_added_high"]))
    measured = (f"{low['limit_w']:g} W vs {low['baseline_w']:g} W: training energy saved "
                f"{low['energy_saved']:+.1%} ({ci_text(saved, '+.1%')}), time added "
                f"{low['time_added']:+.1%} ({ci_text(added, '+.1%')}), n={int(low['n'])} matched "
                "run pairs" + _mark(bool(low["estimated"])))
    if not np.isfinite(saved[0]):
        verdict = "not established (fewer than 3 matched pairs)"
    elif saved[0] > 0:
        verdict = "holds: energy saved" + (", at no significant time cost" if added[0] <= 0
                                           else " at a measured time cost")
    elif saved[1] < 0:
        verdict = "does not hold: the cap cost energy"
    else:
        verdict = "not established (the interval spans zero)"
    return FindingCheck(finding, measured, verdict, paper)


def check_findings(
    runs: pd.DataFrame, correlations: Sequence[Correlation], changes: Sequence[PairedChange],
    power_effects: pd.DataFrame | None = None,
) -> list[FindingCheck]:
    """One check per finding of the study, in paper-notes' order."""
    def on(x: str) -> list[Correlation]:
        return [c for c in correlations if c.x == x and c.y == "energy_per_train_sample_j"]

    return [
        profile_check(runs),
        size_check(on("macs_per_sample"), "MACs", "2a"),
        size_check(on("params"), "Parameters", "2b"),
        batch_check(changes),
        inference_check(runs),
        capping_check(power_effects),
    ]
