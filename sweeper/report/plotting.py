"""Drawing helpers shared by the report's figures: Agg canvases (no display, no pyplot
global state), estimate marking (hollow markers, a title suffix) and readable log axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
    """Logarithmic axes with a label at 1, 2 and 5 of each decade, so an axis spanning a
    decade or two still reads (matplotlib's default labels powers of ten only)."""
    if x:
        ax.set_xscale("log")
    if y:
        ax.set_yscale("log")
    for axis in [a for a, on in ((ax.xaxis, x), (ax.yaxis, y)) if on]:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(log_tick_label))
        axis.set_minor_formatter(NullFormatter())


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


def save(fig: Figure, path: Path) -> Path:
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


def estimate_legend(ax: Axes, estimated: bool, outside: bool = False) -> None:
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
