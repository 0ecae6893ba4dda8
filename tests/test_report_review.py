"""A report a reviewer would accept (issue 20): nothing averaged away (a diverged lr is its
own row), fronts chosen on validation accuracy and respecting the energy uncertainty,
correlations that name their transform, n and interval (the guideline quotes the figure),
figures that state n and their energy and keep legends off the data, one export column per
quantity, logs that name what the store holds, and the study's findings checked.

Stores are real SQLite files written with the project's Run rows (conftest.run_row) and read
back through the report's loader.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import Collection
from matplotlib.figure import Figure
from scipy.stats import pearsonr, spearmanr

from sweeper.pareto import at_chance, epsilon_front, nondominated
from sweeper.report import analysis, build_report, configs, effects, figures
from sweeper.report.__main__ import main as report_main
from sweeper.report.data import load_runs
from sweeper.report.findings import check_findings
from sweeper.store import open_store
from sweeper.store import runs as store_runs
from tests.conftest import run_row
from tests.test_report_figures import visible_labels

# model: (MACs per sample, parameters, test accuracy at lr 0.01)
MODELS = {"cnn": (2.0e4, 9.0e3, 0.588), "vgg": (2.5e5, 6.0e4, 0.80),
          "resnet": (6.0e5, 7.0e4, 0.85)}
SAMPLES = 1000


def write_runs(url: str, sweep: str, rows: list[dict]) -> None:
    """Completed runs into a real store, the way a job records them."""
    store = open_store(url)
    sweep_id = store_runs.ensure_sweep(store, sweep, command="test")
    with store.session() as session:
        for i, row in enumerate(rows):
            session.add(run_row(sweep_id, config_hash=f"{sweep}-{i}", status="completed",
                                hardware_id="hw", meter_source="rapl", **row))
    store.dispose()


def paper_rows() -> list[dict]:
    """3 models x batch 32, 128 x lr 0.01, 0.1 (12 runs); cnn at lr 0.1 diverges to chance
    (test accuracy 0.106, the issue's case)."""
    rows = []
    for model, (macs, params, acc) in MODELS.items():
        for batch in (32, 128):
            for lr in (0.01, 0.1):
                per_sample = 2e-6 * macs**0.9 * batch**-0.25 * (1.05 if lr == 0.1 else 1.0)
                test = 0.106 if (model == "cnn" and lr == 0.1) else acc + (0.02 if lr == 0.1
                                                                           else 0.0)
                e_tr = per_sample * SAMPLES
                rows.append(dict(
                    model=model, batch=batch, lr=lr, optimizer="sgd", epochs=5,
                    params=int(params), macs_per_sample=macs, energy_train_j=e_tr,
                    energy_train_uncertainty_j=e_tr * 0.01, energy_eval_j=e_tr / 10,
                    energy_inference_j=per_sample / 3 * 640, energy_total_j=e_tr * 1.2,
                    energy_per_train_sample_j=per_sample,
                    energy_per_inference_sample_j=per_sample / 3, train_samples=SAMPLES,
                    inference_samples=640, train_duration_s=macs / 1e5,
                    val_accuracy=test - 0.01, test_accuracy=test, forecast_window=0.2,
                    forecast_steps=3, forecast_energy_train_j=e_tr * 1.02, forecast_error=0.02,
                ))
    return rows


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame]:
    url = f"sqlite:///{tmp_path_factory.mktemp('review') / 'runs.db'}"
    write_runs(url, "paper", paper_rows())
    return url, load_runs(open_store(url))


# 1. No silent averaging ------------------------------------------------------------------

def test_table_shows_both_learning_rates_and_never_averages_a_diverged_run(
    paper: tuple[str, pd.DataFrame], tmp_path: Path,
) -> None:
    url, runs = paper
    tables = {t.title.split(" by ")[0]: t for t in configs.batch_tables(runs)}
    accuracy = tables["test accuracy"]
    assert "cnn lr 0.01" in accuracy.row_names and "cnn lr 0.1" in accuracy.row_names
    col = accuracy.batches.index(32)
    learnt_row = accuracy.row_names.index("cnn lr 0.01")
    diverged = accuracy.row_names.index("cnn lr 0.1")
    assert accuracy.values[learnt_row][col] == pytest.approx(0.588)
    assert accuracy.values[diverged][col] == pytest.approx(0.106)
    assert (accuracy.counts[diverged][col], accuracy.chance[diverged][col]) == (0, 1)
    assert not any(v == pytest.approx((0.588 + 0.106) / 2) for row in accuracy.values
                   for v in row)  # the 0.347
    # Configurations (what correlations rest on) leave the diverged runs out.
    table = configs.configurations(runs).set_index(["model", "batch"])
    assert table.loc[("cnn", 32), "n_runs"] == 1
    assert table.loc[("cnn", 32), "test_accuracy"] == pytest.approx(0.588)
    # The page marks the diverged cell and says what each table aggregates over.
    page = build_report(open_store(url), tmp_path / "r", parquet=False).html.read_text()
    assert "0.106 (1, at chance)" in page
    assert "(rows: model lr; each cell: one run)" in page
    # The figure that averages says over what, and that chance runs are left out.
    title = figures.draw_energy_vs_batch(runs).texts[0].get_text()
    assert "left out of every mean" in title and "n = 10 runs" in title


# 2. Which accuracy -------------------------------------------------------------------------

def test_front_is_chosen_on_validation_accuracy_with_test_beside(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    base = dict(model="cnn", batch=32, macs_per_sample=1e4, params=1000,
                energy_train_uncertainty_j=0.01)
    # On test accuracy run 1 beats run 2 (cheaper and more accurate); on validation
    # accuracy, the set the front is chosen on, run 2 is the more accurate.
    write_runs(url, "s", [dict(base, lr=0.01, energy_train_j=10.0, val_accuracy=0.80,
                               test_accuracy=0.95),
                          dict(base, lr=0.02, energy_train_j=20.0, val_accuracy=0.95,
                               test_accuracy=0.80)])
    report = build_report(open_store(url), tmp_path / "r", parquet=False)
    assert report.front is not None
    assert report.front.set_index("id")["on_front"].to_dict() == {1: True, 2: True}
    page = report.html.read_text()
    assert "Chosen on val accuracy, with test accuracy beside it" in page
    assert "<th>chosen on accuracy</th><th>of set</th><th>test accuracy</th>" in page
    assert figures.draw_accuracy_vs_energy(load_runs(open_store(url))).axes[0] \
        .get_ylabel() == "val accuracy"


def test_without_validation_the_front_uses_test_accuracy_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    write_runs(url, "study", [dict(model="cnn", lr=lr, energy_train_j=e, test_accuracy=a)
                              for lr, e, a in ((0.01, 10.0, 0.9), (0.02, 20.0, 0.8))])
    runs = load_runs(open_store(url))
    assert set(runs["selection_set"]) == {"test"}
    front = analysis.energy_accuracy_front(runs)
    assert front.set_index("id")["on_front"].to_dict() == {1: True, 2: False}
    assert figures.draw_accuracy_vs_energy(runs).axes[0].get_ylabel() == \
        "test accuracy (no validation split)"


# 3. Fronts that respect the error bars -----------------------------------------------------

def test_a_point_within_the_uncertainty_of_a_clearly_better_one_is_off_the_front() -> None:
    # The trials 9 and 7: 0.6 mJ cheaper, within the 0.8 J uncertainty.
    acc, energy, unc = [0.118, 0.840], [0.855332, 0.855906], [0.8, 0.8]
    assert nondominated(acc, energy).tolist() == [True, True]  # the plain front keeps both
    assert at_chance(acc, [10, 10]).tolist() == [True, False]
    assert epsilon_front(acc, energy, unc, at_chance(acc, [10, 10])).tolist() == [False, True]
    # Not at chance either: 0.5 J cheaper within 0.4 + 0.4 J is off; a much cheaper one stays.
    acc, energy, unc = [0.60, 0.85, 0.30], [10.0, 10.5, 2.0], [0.4, 0.4, 0.1]
    assert nondominated(acc, energy).tolist() == [True, True, True]
    assert epsilon_front(acc, energy, unc).tolist() == [False, True, True]
    # Beyond the uncertainty the cheaper point stays: 9.0 J + 0.4 + 0.4 < 10.5 J.
    assert epsilon_front([0.60, 0.85], [9.0, 10.5], [0.4, 0.4]).tolist() == [True, True]
    # Less than ACCURACY_MARGIN more accurate is not "clearly": both stay.
    assert epsilon_front([0.845, 0.85], [10.0, 10.5], [0.4, 0.4]).tolist() == [True, True]


def test_report_front_uses_the_stored_uncertainty_and_marks_chance(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    rows = [dict(model="mlp", lr=0.1 * (i + 1), energy_train_j=e, energy_train_uncertainty_j=0.8,
                 val_accuracy=a, test_accuracy=a)
            for i, (e, a) in enumerate([(0.855332, 0.118), (0.855906, 0.840), (5.0, 0.9)])]
    write_runs(url, "search", rows)
    runs = load_runs(open_store(url))
    front = analysis.energy_accuracy_front(runs).set_index("id")
    assert front["on_front"].to_dict() == {1: False, 2: True, 3: True}
    assert front["at_chance"].to_dict() == {1: True, 2: False, 3: False}
    ax = figures.draw_accuracy_vs_energy(runs).axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith("at chance") for label in labels)


# 4. Which correlation ----------------------------------------------------------------------

def test_correlation_names_transform_n_interval_and_the_guideline_quotes_the_figure(
    paper: tuple[str, pd.DataFrame],
) -> None:
    _, runs = paper
    table = configs.configurations(runs)
    (c, *_) = analysis.correlations(runs)  # one machine and meter here: hw (rapl)
    assert (c.x, c.y, c.machine) == ("macs_per_sample", "energy_per_train_sample_j",
                                     "hw (rapl)")
    x, y = np.log(table["macs_per_sample"]), np.log(table["energy_per_train_sample_j"])
    assert (c.transform, c.n) == ("log-log", 6)
    assert c.pearson == pytest.approx(pearsonr(x, y).statistic)
    assert c.spearman == pytest.approx(spearmanr(x, y).statistic)
    assert c.pearson_ci[0] <= c.pearson <= c.pearson_ci[1] <= 1.0
    assert c.spearman_ci[0] <= c.spearman <= c.spearman_ci[1] <= 1.0
    raw = analysis.correlation(table, "macs_per_sample", "energy_per_train_sample_j", "raw")
    assert raw.pearson == pytest.approx(pearsonr(np.exp(x), np.exp(y)).statistic)
    text = c.describe()
    assert text.startswith("Pearson (log-log) ") and "Spearman" in text
    assert "n=6 configurations on hw (rapl)" in text and "[" in text
    shown = figures.draw_energy_vs_macs(runs).axes[0].get_title().replace("\n", " ")
    assert shown == text
    guidelines = analysis.guidelines(runs, correlations_=analysis.correlations(runs))
    assert any(text in g for g in guidelines)


# 5. Counts, units, energy, ticks, legends --------------------------------------------------

def plotted_points(ax) -> np.ndarray:
    """Every data point drawn on an axes (scatter offsets and line vertices), in data units."""
    points = [c.get_offsets() for c in ax.collections
              if isinstance(c, Collection) and len(c.get_offsets())]
    points += [line.get_xydata() for line in ax.get_lines() if len(line.get_xydata())]
    return np.vstack(points) if points else np.empty((0, 2))


def test_energy_vs_macs_plots_the_n_it_states_with_readable_ticks(
    paper: tuple[str, pd.DataFrame],
) -> None:
    _, runs = paper
    fig = figures.draw_energy_vs_macs(runs)
    suptitle = fig.texts[0].get_text()
    assert "n = 10 runs, 6 configurations; energy: gross" in suptitle
    for ax in fig.axes[:2]:
        scattered = sum(len(c.get_offsets()) for c in ax.collections)
        assert scattered == 6  # one point per configuration, as the title says
        assert "J, gross" in ax.get_ylabel()
        assert len(visible_labels(ax.xaxis)) >= 3, visible_labels(ax.xaxis)
        assert len(visible_labels(ax.yaxis)) >= 3, visible_labels(ax.yaxis)


def test_a_narrow_range_still_gets_readable_ticks(tmp_path: Path) -> None:
    """MACs of 2-3x10^4 and 0.86-0.87 mJ per sample on log axes showed one label, repeated
    (2x10^4, 2x10^4, ...): such ranges get linear axes with several distinct labels."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    write_runs(url, "s", [dict(model=f"m{i}", lr=0.01, macs_per_sample=2e4 + 3e3 * i,
                               params=1000, energy_train_j=0.855 + 0.005 * i,
                               energy_per_train_sample_j=(0.855 + 0.005 * i) / 1000,
                               train_samples=1000, val_accuracy=0.5 + 0.1 * i,
                               test_accuracy=0.5 + 0.1 * i) for i in range(4)])
    runs = load_runs(open_store(url))
    macs = figures.draw_energy_vs_macs(runs).axes[0]
    for axis in (macs.xaxis, macs.yaxis):
        labels = visible_labels(axis)
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels  # none repeated
    accuracy = figures.draw_accuracy_vs_energy(runs).axes[0]
    assert accuracy.get_xscale() == "linear"
    labels = visible_labels(accuracy.xaxis)
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels


def test_one_profiling_window_is_not_drawn_as_a_trend(paper: tuple[str, pd.DataFrame]) -> None:
    _, runs = paper
    ax = figures.draw_forecast_error_vs_window(runs).axes[0]
    assert "1 window(s): 20% only, no trend across windows" in ax.get_title()
    assert "n = 12 runs" in ax.get_title()
    assert all(line.get_linestyle() == "None" for line in ax.get_lines())
    one_batch = figures.draw_energy_vs_batch(runs[runs["batch"] == 32])
    assert "one batch size (32) only: no trend" in one_batch.texts[0].get_text()
    assert not [line for ax in one_batch.axes for line in ax.get_lines()
                if len(line.get_xdata()) > 1 and line.get_linestyle() != "None"]


def _overlaps(fig: Figure) -> list[tuple[str, float, float]]:
    """Data points (and bar rectangles) that a legend's box covers, in display space."""
    fig.canvas.draw()
    covered = []
    for ax in fig.axes:
        for legend in [a.get_legend() for a in fig.axes if a.get_legend() is not None]:
            box = legend.get_window_extent()
            for x, y in ax.transData.transform(plotted_points(ax)):
                if box.contains(x, y):
                    covered.append((ax.get_title()[:30], x, y))
            for patch in ax.patches:
                if patch.get_window_extent().overlaps(box):
                    covered.append(("bar", *patch.get_window_extent().p0))
    return covered


def test_legends_never_cover_data(paper: tuple[str, pd.DataFrame]) -> None:
    _, runs = paper
    for draw in ("draw_energy_split", "draw_energy_vs_batch", "draw_energy_vs_macs",
                 "draw_accuracy_vs_energy", "draw_forecast_error_vs_window"):
        fig = getattr(figures, draw)(runs)
        assert any(ax.get_legend() for ax in fig.axes)
        assert _overlaps(fig) == []


def test_every_figure_states_n_and_which_energy(paper: tuple[str, pd.DataFrame]) -> None:
    url, runs = paper
    from sweeper.report.basis import apply_basis

    net, _ = apply_basis(runs.assign(energy_train_net_j=runs["energy_train_j"] * 0.8,
                                     energy_per_train_sample_net_j=runs[
                                         "energy_per_train_sample_j"] * 0.8), "net")
    for frame, basis in ((runs, "gross"), (net, "net of idle")):
        for fig in (figures.draw_accuracy_vs_energy(frame), figures.draw_energy_vs_batch(frame),
                    figures.draw_energy_vs_macs(frame), figures.draw_energy_split(frame),
                    figures.draw_forecast_error_vs_window(frame)):
            text = " ".join([t.get_text() for t in fig.texts]
                            + [ax.get_title() for ax in fig.axes])
            assert "n = " in text and f"energy: {basis}" in text, text


# 6. One column per quantity ----------------------------------------------------------------

def test_exports_have_one_column_per_quantity_with_units(
    paper: tuple[str, pd.DataFrame], tmp_path: Path,
) -> None:
    url, _ = paper
    out = tmp_path / "r"
    assert report_main(["--storage", url, "--out", str(out), "--energy", "net",
                        "--no-parquet", "--quiet"]) == 0
    header = (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert len(header) == len(set(header))
    assert "accuracy" not in header and not [c for c in header if c.endswith("_gross_j")]
    assert {"val_accuracy", "test_accuracy", "selection_accuracy", "selection_set",
            "at_chance"} <= set(header)
    energy = [c for c in header if c.startswith("energy_") and "uncertainty" not in c]
    assert energy and all(c.endswith("_j") for c in energy), energy
    runs = pd.read_csv(out / "runs.csv")
    # No two energy columns carry the same numbers under different names.
    for i, a in enumerate(energy):
        for b in energy[i + 1:]:
            both = runs[[a, b]].dropna()
            assert both.empty or not np.allclose(both[a], both[b]), (a, b)


# 7. Logs that agree with the store ---------------------------------------------------------

def test_the_grid_log_names_the_sweep_as_stored(
    hydra_conf: None, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from hydra import compose

    from sweeper.app.callbacks import SweepCallback

    cfg = compose("config", overrides=["model=mlp", "sweeper.name=mine",
                                       f"storage.url=sqlite:///{tmp_path / 'x.db'}"],
                  return_hydra_config=True)
    with caplog.at_level(logging.INFO, logger="sweeper.app.callbacks"):
        SweepCallback().on_multirun_start(cfg)
    assert "validated 1 job(s) of sweep 'mine'" in caplog.text


def test_the_estimate_names_the_sweep_filter_it_applied(tmp_path: Path) -> None:
    from sweeper.errors import ConfigError
    from sweeper.run.estimate_mode import choose_group

    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match=r"\(estimate.sweep='paper': that sweep's runs only\)"
                                          r".*runs there exist for: none"):
        choose_group([], "hw", None, store, "paper")
    with pytest.raises(ConfigError, match=r"estimate.sweep unset: every sweep's runs"):
        choose_group([], "hw", None, store)


# 8. The study's findings, checked ----------------------------------------------------------

def test_each_finding_of_the_study_is_checked_with_n_and_interval(
    paper: tuple[str, pd.DataFrame], tmp_path: Path,
) -> None:
    url, runs = paper
    checks = check_findings(runs, analysis.correlations(runs), effects.effects(runs))
    assert [c.finding.split(".")[0] for c in checks] == ["1", "2a", "2b", "3", "4", "5"]
    profile, macs, params, batch, inference, capping = checks
    assert "mean |forecast - actual| / actual 2.0%" in profile.measured
    assert "n=12 runs" in profile.measured and profile.verdict.startswith("holds")
    assert "n=6 configurations" in macs.measured
    assert macs.measured.startswith("Pearson (log-log)") and macs.verdict.startswith("holds")
    assert "n=" in params.measured
    # batch 128 vs 32: 128**-0.25 / 32**-0.25 - 1 = -29% for every pair, so the interval
    # is a point and excludes zero.
    assert "batch 128 vs 32: -29% training energy per sample (95% CI -29% to -29%)" in \
        batch.measured and "n=3 matched configurations" in batch.measured  # lr pairs: one
    assert batch.verdict == "holds"
    assert "n=10 runs" in inference.measured and "predictions (median" in inference.measured
    assert capping.verdict == "not testable" and "26.4%" in capping.paper
    assert all("no figure known" in c.paper or "no error figure" in c.paper
               or "no value known" in c.paper for c in checks[:5])
    page = build_report(open_store(url), tmp_path / "r", parquet=False).html.read_text()
    assert "The study's findings, checked on this sweep" in page
    assert "95% CI" in inference.measured
