"""The Hydra app end to end: real trainings in a subprocess, read back from SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sweeper.models import MODEL_NAMES
from tests.conftest import TINY, run_cli


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One real 2x2 multirun shared by the assertions below."""
    work = tmp_path_factory.mktemp("grid")
    proc = run_cli(["-m", "model=mlp,cnn", "batch=32,128", *TINY], cwd=work)
    return work, proc


@pytest.mark.slow
def test_grid_records_one_sweep_with_four_completed_runs(grid: tuple[Path, object]) -> None:
    work, proc = grid
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = work / "results" / "sweeper.db"
    assert _rows(db, "select count(*) from sweeps") == [(1,)]
    runs = _rows(db, "select model, batch, status, val_accuracy, params, macs_per_sample, "
                     "config_hash from runs order by id")
    assert sorted((m, b) for m, b, *_ in runs) == [
        ("cnn", 32), ("cnn", 128), ("mlp", 32), ("mlp", 128)
    ]
    for _model, _batch, status, accuracy, params, macs, _hash in runs:
        assert status == "completed"
        assert 0.0 <= accuracy <= 1.0
        assert params > 0 and macs > 0
    assert len({r[-1] for r in runs}) == 4


def test_grid_stores_energy_per_phase(grid: tuple[Path, object]) -> None:
    work, _ = grid
    db = work / "results" / "sweeper.db"
    for run_id, e_tr, e_in, per_sample, co2, source in _rows(
        db, "select id, energy_train_j, energy_inference_j, energy_per_inference_sample_j, "
            "co2_g, meter_source from runs"
    ):
        assert e_tr > 0 and e_in > 0 and per_sample > 0 and co2 > 0
        assert source and "estimate" in source  # no NVML/RAPL on these machines
        kinds = [k for (k,) in _rows(db, f"select kind from phases where run_id={run_id}")]
        assert kinds == ["train_epoch", "eval", "test", "inference"]
        for (util,) in _rows(db, f"select utilisation from phases where run_id={run_id}"):
            assert 0 <= json.loads(util)["process.cpu_util_pct"] <= 100
        (epoch_j,) = _rows(db, f"select sum(energy_j) from phases "
                               f"where run_id={run_id} and kind='train_epoch'")[0]
        assert epoch_j == pytest.approx(e_tr)
        (unc_tr, unc_total), = _rows(db, "select energy_train_uncertainty_j, "
                                         f"energy_total_uncertainty_j from runs where id={run_id}")
        # CPU-time ticks of the estimate at each boundary: bounded whatever the run's
        # length (on a 1-epoch run it can exceed E_tr itself, and then says so).
        assert 0 < unc_tr < 5.0 and unc_total > 0
        assert _rows(db, f"select count(*) from phases where run_id={run_id} "
                         "and (energy_uncertainty_j is null or energy_flag is not null)") == [(0,)]
        assert _rows(db, f"select count(*) from power_samples where run_id={run_id}")[0][0] > 0


def test_grid_prints_summary_table(grid: tuple[Path, object]) -> None:
    _, proc = grid
    out = proc.stdout
    assert "E_tr" in out and "val acc" in out and "completed" in out
    assert out.count("digits") >= 4
    assert "estimate" in out
    assert out.count(" ± ") >= 8  # E_tr and E_in of each run, with their uncertainty


@pytest.mark.slow
def test_rerunning_the_same_grid_resumes(grid: tuple[Path, object]) -> None:
    work, _ = grid
    db = work / "results" / "sweeper.db"
    proc = run_cli(["-m", "model=mlp,cnn", "batch=32,128", *TINY], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(db, "select count(*) from runs") == [(4,)]
    assert _rows(db, "select count(*) from sweeps") == [(1,)]
    assert "skipping" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model=nosuchnet", "nosuchnet"),
        ("batch=0", "'batch'"),
        ("lr=-1", "'lr'"),
        ("precision=fp16", "fp16"),
        ("storage.url=postgresql+psycopg://x:secret@127.0.0.1:1/none", "cannot open the store"),
    ],
)
@pytest.mark.parametrize("multirun", [False, True])
def test_bad_input_fails_before_training_and_keeps_rows(
    grid: tuple[Path, object], override: str, needle: str, multirun: bool
) -> None:
    work, _ = grid
    db = work / "results" / "sweeper.db"
    before = _rows(db, "select id, status, energy_train_j from runs order by id")
    args = ["-m", "model=mlp,cnn", override, *TINY] if multirun else [override, *TINY]
    proc = run_cli(args, cwd=work)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "secret" not in proc.stderr + proc.stdout
    assert _rows(db, "select id, status, energy_train_j from runs order by id") == before


@pytest.mark.slow
def test_single_run_with_custom_store(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "s.db"
    proc = run_cli(["model=mlp", f"storage.url=sqlite:///{db}", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(db, "select model, status from runs") == [("mlp", "completed")]


def test_help_names_the_app_and_its_groups(tmp_path: Path) -> None:
    proc = run_cli(["--help"], cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("sweeper: Hydra sweeps")
    assert f"model: {', '.join(sorted(MODEL_NAMES))}\n" in proc.stdout
    groups = proc.stdout.split("== Config groups")[1].split("== Keys")[0]
    assert "model: " in groups and "sampler" not in groups  # samplers: the search's section
    assert not (tmp_path / "results").exists()  # help runs nothing
