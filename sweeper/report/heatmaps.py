"""The study's Pearson and Spearman correlation heatmaps: one row of two panels per machine
and meter, over its distinct configurations; |r| >= 0.7 (the study's "strong") is boxed and
bold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sweeper.report.configs import CorrelationMatrix
from sweeper.report.plotting import (
    DPI,
    empty_figure,
    new_figure,
    save,
    with_estimate_suffix,
    wrap_titles,
)

STRONG = 0.7
MAX_MACHINES = 4


def _panel(ax: Axes, matrix: np.ndarray, labels: Sequence[str], title: str) -> object:
    cmap = colormaps["RdBu_r"].with_extremes(bad="#e8e8e8")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-1, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = matrix[i, j]
            if not np.isfinite(value):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=6, color="#777")
                continue
            strong = abs(value) >= STRONG
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
                    fontweight="bold" if strong else "normal",
                    color="white" if abs(value) > 0.6 else "black")
            if strong and i != j:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                       edgecolor="black", linewidth=1.2))
    ax.set_title(title, fontsize="small")
    return image


def draw_correlation_heatmaps(
    matrices: Sequence[CorrelationMatrix], basis: str = "gross"
) -> Figure:
    title = "Correlations between the study's metrics"
    if not matrices:
        return empty_figure(title, "fewer than 3 distinct configurations on any machine")
    shown = list(matrices)[:MAX_MACHINES]
    fig = new_figure(13, 6.2 * len(shown) + 0.6)
    fig.set_layout_engine("constrained")  # room for the colorbar and the rotated labels
    axes = fig.subplots(len(shown), 2, squeeze=False)
    image = None
    for row, m in zip(axes, shown, strict=True):
        where = f"{m.hardware_id} ({m.meter_source}): {m.n_configs} configurations " \
                f"({m.n_runs} runs)"
        off_diagonal = m.pairs_n[~np.eye(len(m.labels), dtype=bool)]
        if off_diagonal.size and int(off_diagonal.min()) < m.n_configs:
            where += f", some cells {int(off_diagonal.min())} (values missing)"
        if m.left_out:
            where += f"\nno spread, left out: {', '.join(m.left_out)}"
        image = _panel(row[0], m.pearson, m.labels,
                       with_estimate_suffix(f"Pearson (raw values)\n{where}", m.estimated))
        _panel(row[1], m.spearman, m.labels,
               with_estimate_suffix(f"Spearman (ranks)\n{where}", m.estimated))
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="r")
    extra = f"; {len(matrices) - len(shown)} more machine(s) in the tables" \
        if len(matrices) > len(shown) else ""
    fig.suptitle(f"{title} (energy: {basis})\n|r| >= {STRONG} boxed and bold; runs differing "
                 "only in lr, seed or repeat are averaged into one configuration, runs at "
                 "chance accuracy left out; Pearson here is on raw values (the energy-vs-MACs "
                 f"figure and the guidelines quote log-log){extra}", fontsize="medium")
    return fig


def correlation_heatmaps(
    matrices: Sequence[CorrelationMatrix], path: Path, basis: str = "gross"
) -> Path:
    fig = draw_correlation_heatmaps(matrices, basis)
    if not matrices:
        return save(fig, path)
    wrap_titles(fig)
    fig.savefig(path, dpi=DPI)
    return path
