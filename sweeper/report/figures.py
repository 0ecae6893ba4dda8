"""The report's PNG figures, drawn on Agg canvases (no display, no pyplot global state).

Estimated energy is marked in every figure: hollow markers (hatched bars) for the
estimated points and " (estimated)" in the title whenever any plotted point is one.
Each function writes one file and returns its path; with no data it writes a figure
saying so, so the page never links a missing image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullFormatter

from sweeper.predict.estimator import EnergyFit
from sweeper.report.analysis import Correlation, completed, correlation, pareto_mask

DPI = 110
ESTIMATE_SUFFIX = " (estimated)"
PHASE_COLORS = {"train_epoch": "#4c72b0", "eval": "#dd8452", "test": "#937860",
                "inference": "#55a868", "profile": "#8172b3"}


def _title(text: str, estimated: bool) -> str:
    return text + (ESTIMATE_SUFFIX if estimated else "")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _colors(models: Sequence[str]) -> dict[str, tuple[float, ...]]:
    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(models)))}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _empty(path: Path, title: str, message: str) -> Path:
    ax = (fig := _figure(6, 3)).subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return _save(fig, path)


def _scatter(
    ax: Axes, x: object, y: object, estimated: object, color: object,
    label: str | None = None, size: float = 36,
) -> None:
    """Filled markers for measured energy, hollow ones for estimated."""
    x, y, est = np.asarray(x), np.asarray(y), np.asarray(estimated, dtype=bool)
    if (~est).any():
        ax.scatter(x[~est], y[~est], s=size, color=color, label=label, zorder=3)
    if est.any():
        ax.scatter(x[est], y[est], s=size, facecolors="none", edgecolors=color,
                   label=None if (~est).any() else label, zorder=3)


def _estimate_legend(ax: Axes, estimated: bool, outside: bool = False) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if estimated:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                              markeredgecolor="gray"))
        labels.append("hollow = estimated energy")
    if handles and outside:
        ax.legend(handles, labels, fontsize="x-small", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
    elif handles:
        ax.legend(handles, labels, fontsize="small", loc="best")


def accuracy_vs_energy(runs: pd.DataFrame, path: Path) -> Path:
    data = completed(runs).dropna(subset=["accuracy"])
    data = data[data["energy_train_j"] > 0]
    title = "Accuracy vs training energy, with the Pareto front"
    if data.empty:
        return _empty(path, title, "no completed runs with energy and accuracy")
    estimated = bool(data["estimated"].any())
    ax = (fig := _figure(7, 4.5)).subplots()
    colors = _colors(data["model"])
    for model, group in data.groupby("model"):
        _scatter(ax, group["energy_train_j"], group["accuracy"], group["estimated"],
                 colors[model], label=model)
    front = data[pareto_mask(data["energy_train_j"], data["accuracy"])].sort_values(
        "energy_train_j")
    ax.step(front["energy_train_j"], front["accuracy"], where="post", color="black",
            linewidth=1, label="Pareto front", zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel("training energy E_tr (J, log)")
    ax.set_ylabel("test accuracy")
    ax.set_title(_title(title, estimated))
    _estimate_legend(ax, estimated)
    return _save(fig, path)


def energy_vs_batch(runs: pd.DataFrame, path: Path) -> Path:
    data = completed(runs)
    title = "Energy vs batch size, per model"
    if data.empty:
        return _empty(path, title, "no completed runs")
    estimated = bool(data["estimated"].any())
    machines = data["hardware_id"].nunique(dropna=False)
    axes = (fig := _figure(13, 4.4)).subplots(1, 2)
    colors = _colors(data["model"])
    panels = [("energy_train_j", "training energy E_tr (J)"),
              ("energy_per_inference_sample_j", "inference energy per sample (J)")]
    keys = ["hardware_id", "meter_source", "model", "precision"]
    for ax, (column, label) in zip(axes, panels, strict=True):
        for (hardware, meter, model, precision), group in data.groupby(keys, dropna=False):
            mean = group.groupby("batch").agg(
                value=(column, "mean"), estimated=("estimated", "any")).dropna()
            if mean.empty:
                continue
            name = f"{model} {precision}" + (f" @{hardware} ({meter})" if machines > 1 else "")
            ax.plot(mean.index, mean["value"], color=colors[model], linewidth=1,
                    linestyle="-" if precision == "fp32" else "--")
            _scatter(ax, mean.index, mean["value"], mean["estimated"], colors[model],
                     label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (log2)")
        ax.set_ylabel(label)
        _estimate_legend(ax, estimated, outside=ax is axes[1])
    note = "mean over repeats" + ("; one line per machine and meter" if machines > 1 else "")
    fig.suptitle(_title(f"{title} ({note})", estimated))
    return _save(fig, path)


def _corr_text(c: Correlation) -> str:
    return f"Pearson(log) {c.pearson_log:+.2f}, Spearman {c.spearman:+.2f}, n={c.n}"


def energy_vs_macs(runs: pd.DataFrame, path: Path) -> Path:
    data = completed(runs)
    data = data[data["energy_per_train_sample_j"] > 0]
    title = "Training energy per sample vs MACs and MACs per parameter"
    if data.empty:
        return _empty(path, title, "no completed runs with MACs and energy")
    estimated = bool(data["estimated"].any())
    axes = (fig := _figure(12, 4.2)).subplots(1, 2)
    colors = _colors(data["model"])
    for ax, x, label in ((axes[0], "macs_per_sample", "MACs per sample (log)"),
                         (axes[1], "macs_per_param", "MACs per parameter (log)")):
        for model, group in data.groupby("model"):
            _scatter(ax, group[x], group["energy_per_train_sample_j"], group["estimated"],
                     colors[model], label=model)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("E_tr per training sample (J, log)")
        ax.set_title(_corr_text(correlation(data, x, "energy_per_train_sample_j")),
                     fontsize="medium")
        _estimate_legend(ax, estimated, outside=ax is axes[1])
    fig.suptitle(_title(title, estimated))
    return _save(fig, path)


def forecast_error_vs_window(runs: pd.DataFrame, path: Path) -> Path:
    data = completed(runs).dropna(subset=["forecast_error", "forecast_window"])
    title = "Forecast error vs profiling window"
    if data.empty:
        return _empty(path, title, "no completed runs with a forecast")
    estimated = bool(data["estimated"].any())
    ax = (fig := _figure(7, 4.2)).subplots()
    x = data["forecast_window"] * 100.0
    y = data["forecast_error"].abs() * 100.0
    _scatter(ax, x, y, data["estimated"], "#4c72b0", label="one run")
    mean = y.groupby(x).mean()
    ax.plot(mean.index, mean.values, color="black", marker="s", label="MAPE per window")
    ax.set_xlabel("profiling window (% of training steps)")
    ax.set_ylabel("|forecast - actual| / actual E_tr (%)")
    ax.set_xlim(0, max(25.0, float(x.max()) * 1.1))
    ax.set_ylim(bottom=0)
    ax.set_title(_title(title, estimated))
    _estimate_legend(ax, estimated)
    return _save(fig, path)


def power_trace(
    trace: pd.DataFrame, phases: pd.DataFrame, run: pd.Series | None, path: Path
) -> Path:
    title = "Power trace" if run is None else f"Power trace of run {run['id']}: {run['model']} " \
        f"b{run['batch']} {run['precision']}"
    if run is None or trace.empty:
        return _empty(path, title, "no stored power samples (energy.keep_samples=false?)")
    estimated = bool(trace["source"].astype(str).str.contains("estimate").any())
    ax = (fig := _figure(11, 4)).subplots()
    for _, phase in phases.iterrows():
        ax.axvspan(phase["start_s"], phase["start_s"] + phase["duration_s"],
                   color=PHASE_COLORS.get(phase["kind"], "#cccccc"), alpha=0.12, linewidth=0)
    for domain, group in trace.groupby("domain"):
        group = group.dropna(subset=["power_w"])
        ax.plot(group["t_s"], group["power_w"], linewidth=1, label=f"{domain}",
                linestyle="--" if "estimate" in str(group["source"].iloc[0]) else "-")
    total = trace.dropna(subset=["power_w"]).groupby("t_s")["power_w"].sum()
    if trace["domain"].nunique() > 1:
        ax.plot(total.index, total.values, color="black", linewidth=1.2, label="total")
    handles, labels = ax.get_legend_handles_labels()
    for kind in phases["kind"].unique():
        handles.append(Rectangle((0, 0), 1, 1, color=PHASE_COLORS.get(kind, "#ccc"),
                                     alpha=0.3))
        labels.append(kind)
    if estimated:
        handles.append(Line2D([], [], color="gray", linestyle="--"))
        labels.append("dashed = estimated power")
    ax.legend(handles, labels, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("time since the sampler started (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(_title(title, estimated))
    return _save(fig, path)


def energy_split(runs: pd.DataFrame, path: Path, limit: int = 40) -> Path:
    data = completed(runs)
    title = "Energy split: training, evaluation, inference"
    if data.empty:
        return _empty(path, title, "no completed runs")
    shown = data.tail(limit)
    estimated = bool(shown["estimated"].any())
    labels = [f"#{r.id} {r.model} b{r.batch} {r.precision}" for r in shown.itertuples()]
    ax = (fig := _figure(9, 1.2 + 0.28 * len(shown))).subplots()
    left = np.zeros(len(shown))
    parts = (("energy_train_j", "train E_tr", "#4c72b0"),
             ("energy_eval_j", "eval + test", "#dd8452"),
             ("energy_inference_j", "inference E_in", "#55a868"))
    hatches = ["//" if e else "" for e in shown["estimated"]]
    for column, label, color in parts:
        values = shown[column].fillna(0.0).to_numpy()
        bars = ax.barh(labels, values, left=left, color=color, label=label)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        left += values
    ax.set_xlabel("energy (J)")
    handles, names = ax.get_legend_handles_labels()
    if estimated:
        handles.append(Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="gray",
                                     hatch="//"))
        names.append("hatched = estimated")
    ax.legend(handles, names, fontsize="small", loc="lower right")
    ax.invert_yaxis()
    suffix = f" (last {limit} of {len(data)} runs)" if len(data) > limit else ""
    ax.set_title(_title(title + suffix, estimated))
    return _save(fig, path)


def estimator_fit(fits: Sequence[EnergyFit], path: Path) -> Path:
    title = "Energy per sample estimated from model size: held-out predictions"
    scored = [f for f in fits if f.loo is not None]
    if not scored:
        return _empty(path, title, "fewer than 3 configurations per hardware: no held-out fit")
    estimated = any(f.estimated for f in scored)
    ax = (fig := _figure(6.5, 5)).subplots()
    cmap = colormaps["tab10"]
    low, high = np.inf, 0.0
    for i, fit in enumerate(scored):
        assert fit.loo is not None
        actual, predicted = np.asarray(fit.loo.actual_j), np.asarray(fit.loo.predicted_j)
        low, high = min(low, actual.min(), predicted.min()), max(high, actual.max(),
                                                                  predicted.max())
        label = (f"{fit.target} on {fit.hardware_id} ({fit.meter_source}): "
                 f"MAPE {fit.loo.mape:.1%}, R2 {fit.loo.r2_log:.2f}")
        _scatter(ax, actual, predicted, [fit.estimated] * len(actual), cmap(i % 10), label=label)
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="exact")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured energy per sample (J)")
    ax.set_ylabel("predicted, configuration held out (J)")
    ax.set_title(_title("Estimate from MACs, params, batch, precision", estimated),
                 fontsize="medium")
    _estimate_legend(ax, estimated)
    return _save(fig, path)
