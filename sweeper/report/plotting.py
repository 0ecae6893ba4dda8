"""Drawing helpers shared by the report's figures: Agg canvases (no display, no pyplot
global state), estimate marking (hollow markers, a title suffix) and readable log axes."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

DPI = 110
ESTIMATE_SUFFIX = " (estimated)"
PHASE_COLORS = {"train_epoch": "#4c72b0", "eval": "#dd8452", "test": "#937860",
                "inference": "#55a868", "profile": "#8172b3", "pause": "#bbbbbb"}


def with_estimate_suffix(text: str, estimated: bool) -> str:
    return text + (ESTIMATE_SUFFIX if estimated else "")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def model_colors(models: Sequence[str]) -> dict[str, tuple[float, ...]]:
    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(models)))}


def log_axes(ax: Axes, x: bool = True, y: bool = True) -> None:
    """Readable axes for values that may span decades, decided from the plotted data: a
    log axis labelled at 1, 2 and 5 of each decade when the data span a decade or more, at
    every integer multiple when they span half a decade to one, and a plain linear axis
    when they span less (a log axis there shows one tick or none). A log axis gets
    ", log scale" appended to its label (set the label first)."""
    limits = ax.dataLim
    for axis, on, (low, high) in ((ax.xaxis, x, limits.intervalx),
                                  (ax.yaxis, y, limits.intervaly)):
        if not on or not (np.isfinite(low) and np.isfinite(high)) or low <= 0:
            continue
        decades = math.log10(high / low) if high > low else 0.0
        if decades < 0.5:
            continue
        (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
        # Few decades: more labels per decade; many: one per decade, so labels never collide.
        subs = (1.0,) if decades >= 2.5 else (1.0, 2.0, 5.0) if decades >= 1.0 else \
            tuple(float(i) for i in range(1, 10))
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(log_tick_label))
        axis.set_minor_formatter(NullFormatter())
        label = axis.get_label_text()
        if label and "log" not in label:
            axis.set_label_text(f"{label}, log scale")


def log_tick_label(value: float, _position: object = None) -> str:
    """Every tick of a log axis labelled: 20, 0.5, 2x10^-5 (matplotlib's own log formatter
    drops the 2s and 5s once an axis spans more than a decade)."""
    if value <= 0:
        return ""
    if 1e-2 <= value < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    power = f"10^{{{int(exponent)}}}"
    return f"${power}$" if mantissa == "1" else rf"${mantissa}\times{power}$"


def batch_axis(ax: Axes, batches: Sequence[float]) -> None:
    """A log2 batch-size axis labelled with the batch sizes themselves (32, 64, ...)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted({float(b) for b in batches})))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def wrap_titles(fig: Figure) -> None:
    """Break long titles into lines that fit their figure or axes (a title that runs off
    the canvas hides what it says about n and the energy)."""
    width_in = fig.get_figwidth()
    texts = [(t, width_in) for t in fig.texts]
    texts += [(ax.title, width_in * ax.get_position().width) for ax in fig.axes]
    for text, inches in texts:
        chars = max(30, int(inches * 72 / (text.get_fontsize() * 0.55)))
        lines = text.get_text().split("\n")
        text.set_text("\n".join(textwrap.fill(line, chars) for line in lines))


def save(fig: Figure, path: Path) -> Path:
    wrap_titles(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def empty_figure(title: str, message: str) -> Figure:
    ax = (fig := new_figure(6, 3)).subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def save_empty(path: Path, title: str, message: str) -> Path:
    return save(empty_figure(title, message), path)


def scatter(
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


def estimate_legend(ax: Axes, estimated: bool, outside: bool = True) -> None:
    """The legend, beside the axes (never over the data), with the hollow-marker key when
    any point is estimated."""
    del outside  # a legend always goes beside the axes: inside, it can cover points
    handles, labels = ax.get_legend_handles_labels()
    if estimated:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                              markeredgecolor="gray"))
        labels.append("hollow = estimated energy")
    if handles:
        ax.legend(handles, labels, fontsize="x-small", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def energy_basis(runs: pd.DataFrame) -> str:
    """'gross' or 'net of idle': which energy the frame's energy columns hold."""
    basis = runs["energy_basis"].dropna().unique() if "energy_basis" in runs else []
    return "net of idle" if "net" in set(basis) else "gross"


def counts(runs: pd.DataFrame, configs: int | None = None) -> str:
    """'n = 64 runs, 32 configurations; energy: gross' for a figure's title."""
    text = f"n = {len(runs)} run{'s' if len(runs) != 1 else ''}"
    if configs is not None:
        text += f", {configs} configuration{'s' if configs != 1 else ''}"
    return f"{text}; energy: {energy_basis(runs)}"
