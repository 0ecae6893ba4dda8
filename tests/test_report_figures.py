"""The report's figures read correctly (issue 14, item 7): tick labels on log axes, batch
sizes as numbers, precision line styles in the legend, titles that say what a point
averages, every run's energy split (paged, with lr), axis labels that name the meter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.axis import Axis
from matplotlib.figure import Figure

from sweeper.report import figures, fit_runs
from sweeper.report.data import load_runs
from sweeper.store import open_store
from tests.test_report import populate


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The synthetic study of test_report (3 models x 3 batches x 2 precisions on a RAPL and
    an estimate machine), read back from its SQLite store."""
    url = f"sqlite:///{tmp_path_factory.mktemp('figures') / 'runs.db'}"
    populate(url)
    return load_runs(open_store(url))


def visible_labels(axis: Axis) -> list[str]:
    """The tick labels a reader sees on an axis (drawn, non-empty, inside the view)."""
    axis.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    return [tick.label1.get_text() for tick in axis.get_major_ticks()
            if tick.label1.get_visible() and tick.label1.get_text()
            and low <= tick.get_loc() <= high]


def test_energy_vs_macs_labels_both_log_axes(runs: pd.DataFrame) -> None:
    fig = figures.draw_energy_vs_macs(runs)
    for ax in fig.axes:
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert len(visible_labels(ax.xaxis)) >= 3, visible_labels(ax.xaxis)
        assert len(visible_labels(ax.yaxis)) >= 3, visible_labels(ax.yaxis)
    # One row per machine and meter: energies are not pooled (issue 20).
    assert "n=18 configurations on hw-rapl (rapl)" in fig.axes[0].get_title()
    assert "n=18 configurations on hw-vm (estimate)" in fig.axes[2].get_title()


def _with_two_lrs(runs: pd.DataFrame) -> pd.DataFrame:
    other = runs.assign(lr=0.01, id=runs["id"] + 1000,
                        energy_train_j=runs["energy_train_j"] * 1.02)
    return pd.concat([runs, other], ignore_index=True)


def test_energy_vs_batch_reads_batch_sizes_precisions_and_what_it_averages(
    runs: pd.DataFrame,
) -> None:
    fig = figures.draw_energy_vs_batch(_with_two_lrs(runs))
    for ax in fig.axes[:2]:
        assert visible_labels(ax.xaxis) == ["32", "64", "128"]
        assert len(visible_labels(ax.yaxis)) >= 2
    legend = fig.axes[1].get_legend()
    styles = {text.get_text(): handle.get_linestyle()
              for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)}
    assert styles["fp32 (line style)"] == "-" and styles["bf16 (line style)"] == "--"
    title = fig.texts[0].get_text()  # the suptitle
    assert "mean over repeats" not in title
    assert "mean of runs over lr 0.001, 0.01" in title
    single = figures.draw_energy_vs_batch(runs).texts[0].get_text()
    assert "one run per point" in single and "lr" not in single.split("(", 1)[1]


def _titles(fig: Figure) -> str:
    return " ".join(ax.get_title() for ax in fig.axes)


def test_energy_split_shows_every_run_on_pages_with_lr(
    runs: pd.DataFrame, tmp_path: Path
) -> None:
    (tmp_path / "energy_split_3.png").write_bytes(b"stale")  # from an earlier, larger report
    many = _with_two_lrs(runs)  # 72 completed runs
    pages = figures.energy_split(many, tmp_path, per_page=40)
    assert [p.name for p in pages] == ["energy_split.png", "energy_split_2.png"]
    assert not (tmp_path / "energy_split_3.png").exists()
    second = figures.draw_energy_split(many, page=2, per_page=40)
    assert "runs 41-72 of 72, page 2 of 2" in _titles(second)
    labels = [t.get_text() for t in second.axes[0].get_yticklabels()]
    assert len(labels) == 32 and all(" lr 0.01" in label for label in labels)
    first = figures.draw_energy_split(runs)
    assert "all 36 completed runs" in _titles(first)
    assert [t.get_text() for t in first.axes[0].get_yticklabels()][0].startswith(
        "#1 cnn b32 fp32 lr 0.001 (")


def test_estimator_fit_axis_names_the_meter(runs: pd.DataFrame) -> None:
    def xlabel(meters: set[str]) -> str:
        fits = [f for f in fit_runs(runs[runs["meter_source"].isin(meters)])]
        return figures.draw_estimator_fit(fits).axes[0].get_xlabel()

    assert xlabel({"estimate"}).startswith("estimated energy per sample")
    assert "measured" not in xlabel({"estimate"})
    assert xlabel({"rapl"}).startswith("measured energy per sample")
    assert "measured or estimated" in xlabel({"rapl", "estimate"})
