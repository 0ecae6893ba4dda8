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
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sweeper.pareto import ACCURACY_MARGIN, CHANCE_MARGIN
from sweeper.predict.estimator import EnergyFit
from sweeper.report.analysis import (
    accuracy_name,
    correlation,
    energy_accuracy_front,
    joules,
    machine_name,
)
from sweeper.report.configs import (
    MACHINE_KEYS,
    chance_note,
    completed,
    configurations,
    learnt,
)
from sweeper.report.data import is_estimate
from sweeper.report.plotting import (
    PHASE_COLORS,
    batch_axis,
    counts,
    empty_figure,
    energy_basis,
    estimate_legend,
    log_axes,
    model_colors,
    new_figure,
    save,
    save_empty,
    scatter,
    with_estimate_suffix,
)


def accuracy_vs_energy(runs: pd.DataFrame, path: Path) -> Path:
    return save(draw_accuracy_vs_energy(runs), path)


def draw_accuracy_vs_energy(runs: pd.DataFrame) -> Figure:
    """Every completed run at its selection accuracy (val, else test: the axis says which)
    and E_tr with its uncertainty; the uncertainty-aware front per machine (sweeper.pareto);
    runs at chance accuracy marked x and never on the front."""
    data = energy_accuracy_front(runs)
    title = "Accuracy vs training energy, with the front"
    if data.empty:
        return empty_figure(title, "no completed runs with energy and accuracy")
    estimated = bool(data["estimated"].any())
    ax = (fig := new_figure(8, 4.8)).subplots()
    colors = model_colors(data["model"])
    chance = data["at_chance"].astype(bool)
    ax.errorbar(data["energy_train_j"], data["selection_accuracy"],
                xerr=data["energy_train_uncertainty_j"].fillna(0.0).to_numpy(), fmt="none",
                ecolor="#999999", elinewidth=0.8, zorder=2)
    for model, group in data[~chance].groupby("model"):
        scatter(ax, group["energy_train_j"], group["selection_accuracy"], group["estimated"],
                colors[model], label=model)
    if chance.any():
        ax.scatter(data.loc[chance, "energy_train_j"], data.loc[chance, "selection_accuracy"],
                   marker="x", color="#444444", zorder=3,
                   label=f"at chance (< 1/classes + {CHANCE_MARGIN:g})")
    machines = data.groupby(["hardware_id", "meter_source"], dropna=False)
    for i, (_, group) in enumerate(machines):
        front = group[group["on_front"]]
        ax.step(front["energy_train_j"], front["selection_accuracy"], where="post",
                color="black", linewidth=1, linestyle=("-", "--", ":", "-.")[i % 4], zorder=2,
                label="front" if len(machines) == 1 else f"front, {front['hardware_id'].iloc[0]}"
                if not front.empty else None)
    ax.set_xlabel(f"training energy E_tr (J, {energy_basis(data)})")
    ax.set_ylabel(accuracy_name(data))
    log_axes(ax, y=False)
    ax.set_title(with_estimate_suffix(
        f"{title}\n{counts(data)}; bars: energy uncertainty; a point within the uncertainty "
        f"of one >= {ACCURACY_MARGIN:.0%} more accurate is off the front", estimated),
        fontsize="small")
    estimate_legend(ax, estimated)
    return fig


# Settings a point of energy_vs_batch averages over: they do not change the computation.
AVERAGED = (("lr", "lr", "g"), ("seed", "seed", ""), ("repeat", "repeat", ""))
# Settings that do: when they vary, each value gets its own line.
SPLIT = ("dataset", "epochs", "optimizer")


def averaged_note(groups: pd.core.groupby.DataFrameGroupBy) -> str:
    """What the points of a grouped plot average over, named with the values that vary:
    'each point: mean of runs over lr 0.001, 0.01 and 2 repeats', or 'one run per point'."""
    frame = groups.obj
    varying = []
    for column, name, fmt in AVERAGED:
        if column not in frame or not (groups[column].nunique(dropna=False) > 1).any():
            continue
        values = sorted(frame[column].dropna().unique())
        if column in ("seed", "repeat"):
            varying.append(f"{len(values)} {name}s")
        else:
            varying.append(f"{name} " + ", ".join(format(v, fmt) for v in values))
    if varying:
        return "each point: mean of runs over " + "; ".join(varying)
    return "one run per point" if (groups.size() <= 1).all() else "each point: mean of runs"


def draw_energy_vs_batch(runs: pd.DataFrame) -> Figure:
    data = learnt(runs)
    title = "Energy vs batch size, per model"
    if data.empty:
        return empty_figure(title, "no completed runs above chance accuracy")
    trend = data["batch"].nunique() > 1
    estimated = bool(data["estimated"].any())
    machines = data["hardware_id"].nunique(dropna=False)
    axes = (fig := new_figure(13, 4.6)).subplots(1, 2)
    colors = model_colors(data["model"])
    panels = [("energy_train_j", "training energy E_tr (J)"),
              ("energy_per_inference_sample_j", "inference energy per sample (J)")]
    split = [c for c in SPLIT if data[c].nunique(dropna=False) > 1]
    keys = ["hardware_id", "meter_source", "model", "precision", *split]
    precisions = sorted(data["precision"].unique(), key=lambda p: (p != "fp32", p))
    styles = {p: ("-", "--", ":", "-.")[i % 4] for i, p in enumerate(precisions)}
    for ax, (column, label) in zip(axes, panels, strict=True):
        labelled: set[str] = set()
        for (hardware, meter, model, precision, *rest), group in data.groupby(
                keys, dropna=False):
            mean = group.groupby("batch").agg(
                value=(column, "mean"), estimated=("estimated", "any")).dropna()
            if mean.empty:
                continue
            name = " ".join([str(model), *(f"{c}={v}" for c, v in zip(split, rest, strict=True))])
            name += f" @{hardware} ({meter})" if machines > 1 else ""
            if trend:  # one batch size has no trend to draw
                ax.plot(mean.index, mean["value"], color=colors[model], linewidth=1,
                        linestyle=styles[precision])
            scatter(ax, mean.index, mean["value"], mean["estimated"], colors[model],
                     label=None if name in labelled else name)
            labelled.add(name)
        batch_axis(ax, data["batch"])
        ax.set_xlabel("batch size (log scale)")
        ax.set_ylabel(f"{label}, {energy_basis(data)}")
        log_axes(ax, x=False)
    for precision, style in styles.items():  # the line styles, in the legend
        axes[1].plot([], [], color="gray", linestyle=style, label=f"{precision} (line style)")
    estimate_legend(axes[1], estimated, outside=True)  # one legend, beside the right panel
    points = data.groupby([*keys, "batch"], dropna=False)
    note = f"{counts(data, len(points))} (one point each); " + averaged_note(points) \
        + chance_note(runs)
    if not trend:
        note += f"; one batch size ({int(data['batch'].iloc[0])}) only: no trend"
    if machines > 1:
        note += "; one line per machine and meter"
    if split:
        note += f"; one line per {', '.join(split)}"
    fig.suptitle(with_estimate_suffix(f"{title}\n{note}", estimated), fontsize="small",
                 wrap=True)
    return fig


def energy_vs_batch(runs: pd.DataFrame, path: Path) -> Path:
    return save(draw_energy_vs_batch(runs), path)


def energy_vs_macs(runs: pd.DataFrame, path: Path) -> Path:
    return save(draw_energy_vs_macs(runs), path)


MAX_MACHINES = 4


def draw_energy_vs_macs(runs: pd.DataFrame) -> Figure:
    """One row of two panels per machine and meter (energies are not pooled across them),
    one point per distinct configuration (what the correlation is computed over); the panel
    titles quote the same Correlation the guidelines and tables quote."""
    data = learnt(runs)
    data = data[data["energy_per_train_sample_j"] > 0]
    title = "Training energy per sample vs MACs and MACs per parameter"
    if data.empty:
        return empty_figure(title, "no completed runs with MACs and energy")
    configs = configurations(data)
    estimated = bool(data["estimated"].any())
    machines = sorted(configs.groupby(list(MACHINE_KEYS), dropna=False),
                      key=lambda item: (-len(item[1]), str(item[0])))
    shown = machines[:MAX_MACHINES]
    fig = new_figure(12, 0.8 + 4.0 * len(shown))
    axes = fig.subplots(len(shown), 2, squeeze=False)
    colors = model_colors(configs["model"])
    for row, (key, group) in zip(axes, shown, strict=True):
        machine = machine_name(*key)
        for ax, x, label in ((row[0], "macs_per_sample", "MACs per sample"),
                             (row[1], "macs_per_param", "MACs per parameter")):
            for model, points in group.groupby("model"):
                scatter(ax, points[x], points["energy_per_train_sample_j"],
                        points["estimated"], colors[model], label=model)
            ax.set_xlabel(label)
            ax.set_ylabel(f"E_tr per training sample (J, {energy_basis(data)})")
            log_axes(ax)
            c = correlation(group, x, "energy_per_train_sample_j", machine=machine)
            text = c.describe() if group[x].nunique() > 1 else \
                f"one {label} value only on {machine}: no correlation, no trend"
            ax.set_title(text.replace(", Spearman", ",\nSpearman"), fontsize="small")
    estimate_legend(axes[0][1], estimated)
    more = f"; {len(machines) - len(shown)} more machine(s) in the correlations table" \
        if len(machines) > len(shown) else ""
    fig.suptitle(with_estimate_suffix(
        f"{title}\n{counts(data, len(configs))} on {len(machines)} machine(s) and meter(s), "
        "one row each; each point: one configuration, the mean of its runs over lr, seed and "
        "repeat" + chance_note(runs) + more, estimated), fontsize="small")
    return fig


def forecast_error_vs_window(runs: pd.DataFrame, path: Path) -> Path:
    return save(draw_forecast_error_vs_window(runs), path)


def draw_forecast_error_vs_window(runs: pd.DataFrame) -> Figure:
    """Each run's forecast error at its window; the per-window mean is joined by a line
    only when there are several windows (one window is not a trend)."""
    data = completed(runs).dropna(subset=["forecast_error", "forecast_window"])
    title = "Forecast error vs profiling window"
    if data.empty:
        return empty_figure(title, "no completed runs with a forecast")
    estimated = bool(data["estimated"].any())
    ax = (fig := new_figure(7.5, 4.2)).subplots()
    x = data["forecast_window"] * 100.0
    y = data["forecast_error"].abs() * 100.0
    scatter(ax, x, y, data["estimated"], "#4c72b0", label="one run")
    mean = y.groupby(x).mean()
    windows = len(mean)
    ax.plot(mean.index, mean.values, color="black", marker="s",
            linestyle="-" if windows > 1 else "none", label="mean |error| per window")
    ax.set_xlabel("profiling window (% of training steps)")
    ax.set_ylabel("|forecast - actual| / actual E_tr (%)")
    ax.set_xlim(0, max(25.0, float(x.max()) * 1.1))
    ax.set_ylim(bottom=0)
    scope = f"{counts(data)}; {windows} window(s)"
    if windows == 1:
        scope += f": {float(mean.index[0]):g}% only, no trend across windows"
    ax.set_title(with_estimate_suffix(f"{title}\n{scope}", estimated), fontsize="small")
    estimate_legend(ax, estimated)
    return fig


def power_trace(
    trace: pd.DataFrame, phases: pd.DataFrame, run: pd.Series | None, path: Path
) -> Path:
    title = "Power trace" if run is None else f"Power trace of run {run['id']}: {run['model']} " \
        f"b{run['batch']} {run['precision']}"
    if run is None or trace.empty:
        return save_empty(path, title, "no stored power samples (energy.keep_samples=false?)")
    estimated = bool(trace["source"].astype(str).str.contains("estimate").any())
    ax = (fig := new_figure(11, 4)).subplots()
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
    ax.set_ylabel("power (W, gross: as read, idle included)")
    ax.set_title(with_estimate_suffix(
        f"{title}\nn = 1 run, {len(trace)} samples over {trace['domain'].nunique()} "
        "domain(s); power: gross", estimated), fontsize="small")
    return save(fig, path)


def split_page_name(page: int) -> str:
    return "energy_split.png" if page == 1 else f"energy_split_{page}.png"


def energy_split(runs: pd.DataFrame, out_dir: Path, per_page: int = 40) -> list[Path]:
    """The energy split of every completed run, `per_page` runs to a figure (energy_split.png,
    energy_split_2.png, ...); pages left from an earlier, larger report are removed."""
    data = completed(runs)
    pages = max(1, -(-len(data) // per_page))
    for stale in out_dir.glob("energy_split_*.png"):
        number = stale.stem.removeprefix("energy_split_")
        if not number.isdigit() or int(number) > pages:
            stale.unlink()
    return [save(draw_energy_split(data, page, per_page), out_dir / split_page_name(page))
            for page in range(1, pages + 1)]


def draw_energy_split(runs: pd.DataFrame, page: int = 1, per_page: int = 40) -> Figure:
    data = completed(runs)
    title = "Energy split: training, evaluation, inference"
    if data.empty:
        return empty_figure(title, "no completed runs")
    first = (page - 1) * per_page
    shown = data.iloc[first:first + per_page]
    estimated = bool(shown["estimated"].any())
    parts = (("energy_train_j", "train E_tr", "#4c72b0"),
             ("energy_eval_j", "eval + test", "#dd8452"),
             ("energy_inference_j", "inference E_in", "#55a868"))
    energies = shown[[c for c, _, _ in parts]].fillna(0.0)
    totals = energies.sum(axis=1).to_numpy()
    # Totals that span decades would leave most bars invisible on one linear axis: each bar
    # is the run's split in percent, and its total is in its label.
    labels = [f"#{r.id} {r.model} b{r.batch} {r.precision} lr {r.lr:g} ({joules(t)})"
              + (" [at chance]" if r.at_chance else "")
              for r, t in zip(shown.itertuples(), totals, strict=True)]
    ax = (fig := new_figure(10, 1.6 + 0.28 * len(shown))).subplots()
    left = np.zeros(len(shown))
    hatches = ["//" if e else "" for e in shown["estimated"]]
    for column, label, color in parts:
        values = 100.0 * energies[column].to_numpy() / np.where(totals > 0, totals, 1.0)
        bars = ax.barh(labels, values, left=left, color=color, label=label)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        left += values
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"share of the run's energy (%; totals in J, {energy_basis(shown)}, "
                  "in the labels)")
    handles, names = ax.get_legend_handles_labels()
    if estimated:
        handles.append(Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="gray",
                                     hatch="//"))
        names.append("hatched = estimated")
    ax.legend(handles, names, fontsize="x-small", loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the bars, never on them
    ax.invert_yaxis()
    pages = -(-len(data) // per_page)
    scope = (f" (runs {first + 1}-{first + len(shown)} of {len(data)}, page {page} of {pages})"
             if pages > 1 else f" (all {len(data)} completed runs)")
    scope += f"\nn = {len(shown)} runs; energy: {energy_basis(shown)}"
    ax.set_title(with_estimate_suffix(title + scope, estimated), fontsize="medium")
    return fig


def meter_axis_label(sources: Sequence[str]) -> str:
    """'measured', 'estimated' or both, from the meters that produced the values."""
    kinds = {"estimated" if is_estimate(s) else "measured" for s in sources}
    if kinds == {"estimated"}:
        return "estimated energy per sample (J, estimate meter)"
    if kinds == {"measured"}:
        return "measured energy per sample (J)"
    return "energy per sample, measured or estimated (hollow: estimate meter) (J)"


def estimator_fit(fits: Sequence[EnergyFit], path: Path, basis: str = "gross") -> Path:
    return save(draw_estimator_fit(fits, basis), path)


def draw_estimator_fit(fits: Sequence[EnergyFit], basis: str = "gross") -> Figure:
    title = "Energy per sample estimated from model size: held-out predictions"
    scored = [f for f in fits if f.loo is not None]
    if not scored:
        return empty_figure(title,
                             "fewer than 3 configurations per hardware: no held-out fit")
    estimated = any(f.estimated for f in scored)
    ax = (fig := new_figure(10, 5.5)).subplots()
    cmap = colormaps["tab10"]
    low, high = np.inf, 0.0
    for i, fit in enumerate(scored):
        assert fit.loo is not None
        actual, predicted = np.asarray(fit.loo.actual_j), np.asarray(fit.loo.predicted_j)
        low, high = min(low, actual.min(), predicted.min()), max(high, actual.max(),
                                                                  predicted.max())
        label = (f"{fit.target} on {fit.hardware_id} ({fit.meter_source}): "
                 f"MAPE {fit.loo.mape:.1%}, R2 {fit.loo.r2_log:.2f}")
        scatter(ax, actual, predicted, [fit.estimated] * len(actual), cmap(i % 10), label=label)
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="exact")
    ax.set_xlabel(meter_axis_label([f.meter_source for f in scored]))
    ax.set_ylabel("predicted, configuration held out (J)")
    log_axes(ax)
    configs = sum(f.loo.n_configs for f in scored if f.loo is not None)
    runs = sum(f.n_rows for f in scored)
    ax.set_title(with_estimate_suffix(
        "Estimate from MACs, params, batch, precision\n"
        f"n = {runs} runs, {configs} configurations, summed over {len(scored)} fits "
        "(training and inference fitted apart); "
        f"energy: {basis}", estimated), fontsize="small")
    estimate_legend(ax, estimated)
    return fig
