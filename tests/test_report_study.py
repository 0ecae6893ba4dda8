"""The study's analyses in the report (issue 12, item 5), on a real SQLite store of runs:
correlations over distinct configurations (runs differing only in lr count once), the
efficiency metrics, |r| >= 0.7 marked, model x batch tables, and guidelines that carry a
bootstrap interval, are withheld when it spans zero, and never read lr as an energy effect.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from scipy.stats import pearsonr, spearmanr

from sweeper.report import analysis, configs, effects
from sweeper.report.data import load_runs
from sweeper.report.heatmaps import STRONG, draw_correlation_heatmaps
from sweeper.store import Sweep, open_store
from tests.conftest import run_row

# model: (MACs per sample, parameters, seconds per epoch, effect of bf16 on energy)
MODELS = {"a": (1e5, 2e4, 2.0, 0.80), "b": (4e5, 9e4, 3.0, 1.25),
          "c": (9e5, 1e5, 5.0, 0.90), "d": (3e6, 6e5, 9.0, 1.10)}
BATCH_FACTOR = {32: 1.0, 128: 0.7}  # batch 128 uses 30% less energy, for every model
LR_ARTIFACT = {0.01: 1.0, 0.1: 1.3}  # the lr 0.1 runs happened to read 30% more (noise)
LR_ACCURACY = {0.01: 0.80, 0.1: 0.90}
SAMPLES = 1000


def energy_j(model: str, batch: int, precision: str, lr: float) -> float:
    macs, _, _, bf16 = MODELS[model]
    return 1e-4 * macs * BATCH_FACTOR[batch] * (bf16 if precision == "bf16" else 1.0) \
        * LR_ARTIFACT[lr]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """4 models x 2 batch sizes x 2 precisions x 2 learning rates = 32 runs, 16 distinct
    configurations, on one RAPL machine; read back through the report's loader."""
    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'runs.db'}"
    store = open_store(url)
    with store.session() as session:
        sweep = Sweep(name="study")
        session.add(sweep)
        session.flush()
        for model, (macs, params, seconds, _) in MODELS.items():
            for batch in BATCH_FACTOR:
                for precision in ("fp32", "bf16"):
                    for lr in LR_ARTIFACT:
                        e_tr = energy_j(model, batch, precision, lr)
                        session.add(run_row(
                            sweep.id, config_hash=f"{model}{batch}{precision}{lr}",
                            model=model, batch=batch, precision=precision, lr=lr,
                            status="completed", params=int(params), macs_per_sample=macs,
                            hardware_id="hw", meter_source="rapl", energy_train_j=e_tr,
                            energy_inference_j=e_tr / 50, energy_eval_j=e_tr / 20,
                            energy_per_train_sample_j=e_tr / SAMPLES,
                            energy_per_inference_sample_j=e_tr / 50 / 640,
                            train_samples=SAMPLES, inference_samples=640,
                            train_duration_s=seconds * (0.8 if batch == 128 else 1.0),
                            test_accuracy=LR_ACCURACY[lr] + 0.01 * len(model) * macs / 1e7,
                        ))
    return load_runs(store)


def test_correlations_rest_on_distinct_configurations(runs: pd.DataFrame) -> None:
    (matrix,) = configs.correlation_matrices(runs)
    assert (matrix.n_configs, matrix.n_runs) == (16, 32)  # lr pairs count once
    # The reference: average the two lr runs of each configuration by hand, then correlate.
    done = runs.assign(per_sample=runs["energy_per_train_sample_j"])
    by_config = done.groupby(["model", "batch", "precision"]).agg(
        per_sample=("per_sample", "mean"), macs=("macs_per_sample", "first"),
        samples_per_j=("energy_train_j", lambda e: np.mean(SAMPLES / e)))
    i, j = matrix.labels.index("E_tr / sample"), matrix.labels.index("MACs")
    expected_p = pearsonr(by_config["per_sample"], by_config["macs"]).statistic
    expected_s = spearmanr(by_config["per_sample"], by_config["macs"]).statistic
    assert matrix.pearson[i, j] == pytest.approx(expected_p)
    assert matrix.spearman[i, j] == pytest.approx(expected_s)
    assert matrix.pairs_n[i, j] == 16
    # The study's efficiency metrics are part of the matrix.
    assert {"throughput", "samples / J", "MACs / J", "MACs / param", "train time"} <= set(
        matrix.labels)
    table = configs.configurations(runs).set_index(["model", "batch", "precision"])
    assert table["train_samples_per_j"].to_numpy() == pytest.approx(
        by_config.loc[table.index, "samples_per_j"].to_numpy())
    assert table.loc[("a", 32, "fp32"), "train_samples_per_s"] == pytest.approx(SAMPLES / 2.0)
    assert table.loc[("a", 32, "fp32"), "macs_per_j"] == pytest.approx(np.mean(
        [1e5 * SAMPLES / energy_j("a", 32, "fp32", lr) for lr in LR_ARTIFACT]))


def test_strong_correlations_are_listed_and_boxed(runs: pd.DataFrame) -> None:
    (matrix,) = configs.correlation_matrices(runs)
    strong = matrix.strong()
    assert ("E_tr / sample", "MACs") in {(a, b) for a, b, *_ in strong}
    assert all(abs(p) >= STRONG or abs(s) >= STRONG for _, _, p, s, _ in strong)
    fig = draw_correlation_heatmaps([matrix])
    for ax, values in zip(fig.axes[:2], (matrix.pearson, matrix.spearman), strict=True):
        boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
        off_diagonal = ~np.eye(len(matrix.labels), dtype=bool)
        assert len(boxes) == int((np.abs(values[off_diagonal]) >= STRONG).sum())


def test_model_by_batch_tables(runs: pd.DataFrame) -> None:
    """Every swept setting that varies (lr too) gets its own rows: nothing is averaged."""
    tables = {t.title.split(" by ")[0]: t for t in configs.batch_tables(runs)}
    assert set(tables) == {"E_tr (J)", "E_in (J)", "test accuracy"}
    e_tr = tables["E_tr (J)"]
    assert e_tr.batches == [32, 128]
    assert e_tr.row_names == [f"{m} {p} lr {lr}" for m in "abcd" for p in ("bf16", "fp32")
                              for lr in ("0.01", "0.1")]
    assert "(rows: model precision lr; each cell: one run)" in e_tr.title
    for lr in LR_ARTIFACT:
        row, col = e_tr.row_names.index(f"b fp32 lr {lr:g}"), e_tr.batches.index(128)
        assert e_tr.values[row][col] == pytest.approx(energy_j("b", 128, "fp32", lr))
        assert e_tr.counts[row][col] == 1 and e_tr.chance[row][col] == 0
        assert tables["test accuracy"].values[row][col] == pytest.approx(
            LR_ACCURACY[lr] + 0.01 * 4e5 / 1e7)
    assert e_tr.estimated == [False] * 16  # RAPL-measured rows are not marked as estimates


def test_guidelines_carry_intervals_and_withhold_what_spans_zero(runs: pd.DataFrame) -> None:
    changes = effects.effects(runs)
    text = analysis.guidelines(runs, changes=changes)
    batch = next(c for c in changes if c.factor == "batch" and c.model is None)
    # 4 models x 2 precisions; the two lr runs of each are one configuration.
    assert batch.n == 8
    assert batch.energy_change == pytest.approx(-0.3)
    assert batch.energy_finding
    assert any(g.startswith("batch 128 used 30% less training energy than batch 32 (95% CI")
               for g in text)
    # bf16 saves energy on two models and costs it on two: the interval spans zero.
    precision = next(c for c in changes if c.factor == "precision")
    low, high = precision.energy_ci
    assert low < 0 < high and not precision.energy_finding
    assert not any("than fp32" in g for g in text)
    withheld = effects.not_established(changes)
    assert any(g.startswith("bf16 used") for g in withheld)
    # Per model there are only two configurations: no interval, no finding.
    per_model = [c for c in changes if c.factor == "batch" and c.model is not None]
    assert per_model and all(c.n == 2 and math.isnan(c.energy_ci[0]) for c in per_model)
    assert all(not g.startswith(("a:", "b:", "c:", "d:")) for g in text)
    # lr changed the measured energy by 30% here, but lr does not change the computation.
    lr_lines = [g for g in text + withheld if g.startswith("lr ")]
    assert lr_lines and all("training energy" not in g for g in lr_lines)
    assert "energy is not compared" in lr_lines[0]
    assert "lr 0.1 gave 10.0 points more test accuracy than lr 0.01" in lr_lines[0]


def test_report_page_shows_the_analyses(runs: pd.DataFrame, tmp_path: Path) -> None:
    from sweeper.report.html import write_page

    (matrix,) = configs.correlation_matrices(runs)
    changes = effects.effects(runs)
    page = write_page(
        tmp_path / "index.html", store_url="sqlite:///x.db", runs=runs, figures=[],
        guidelines=analysis.guidelines(runs, changes=changes),
        not_established=effects.not_established(changes), correlations=[],
        matrices=[matrix], batch_tables=configs.batch_tables(runs), fits=[], windows=[],
        exports=[],
    ).read_text()
    assert "Strong correlations (|r| &ge; 0.7)" in page
    assert "<h3>E_tr (J) by model and batch size (rows: model precision lr; each cell: one " \
           "run)</h3>" in page
    assert "Not established" in page and "bf16 used" in page

    from rich.console import Console

    from sweeper.report.terminal import print_summary

    console = Console(file=io.StringIO(), width=200)
    print_summary(console, runs, analysis.guidelines(runs, changes=changes), [], "x.html",
                  effects.not_established(changes))
    summary = console.file.getvalue()
    assert "5 effect(s) not established" in summary and "bf16 used" not in summary
