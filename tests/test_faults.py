"""Sweeps that survive faults, through the real CLI: a crashing configuration, resume,
and Ctrl-C / SIGTERM in the middle of training."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LONG_RUN, TINY, cli_env, kill_mid_training, run_cli, wait_for_training

pytestmark = pytest.mark.slow

# lr=1e6 with SGD really diverges: the loss is NaN within a few steps.
CRASH_GRID = ["-m", "model=mlp", "optimizer=sgd", "lr=0.01,0.05,1e6", *TINY]


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real 3-job grid whose last job diverges, shared by the tests below (in order)."""
    work = tmp_path_factory.mktemp("crash")
    return work, run_cli(CRASH_GRID, cwd=work)


def test_crashing_config_is_recorded_and_the_rest_complete(
    crashed: tuple[Path, subprocess.CompletedProcess],
) -> None:
    work, proc = crashed
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 3 run(s) failed" in proc.stderr
    db = work / "results" / "sweeper.db"
    runs = _rows(db, "select id, lr, status, error_type, error_message, energy_train_j, "
                     "energy_total_j, val_accuracy, ended_at from runs order by lr")
    assert [(lr, status) for _, lr, status, *_ in runs] == [
        (0.01, "completed"), (0.05, "completed"), (1e6, "failed")
    ]
    for _, _, _, error_type, _, e_tr, _, accuracy, _ in runs[:2]:
        assert error_type is None and e_tr > 0 and accuracy is not None
    run_id, _, _, error_type, message, e_tr, e_total, accuracy, ended = runs[2]
    assert error_type == "DivergedError"
    assert "nan" in message.lower() or "inf" in message.lower()
    # Energy measured until the failure is kept: the cut-short epoch counts as training.
    assert e_tr > 0 and e_total >= e_tr
    assert accuracy is None and ended is not None
    assert _rows(db, f"select kind from phases where run_id={run_id}") == [("train_epoch",)]
    assert _rows(db, f"select count(*) from power_samples where run_id={run_id}")[0][0] > 0
    # The summary table lists the failure with its reason; no traceback anywhere.
    assert "failed" in proc.stdout and "DivergedError" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_rerun_skips_completed_and_reruns_failed_and_interrupted(
    crashed: tuple[Path, subprocess.CompletedProcess],
) -> None:
    work, _ = crashed
    db = work / "results" / "sweeper.db"
    # Pretend the lr=0.05 run was pre-empted (a real interrupt is tested below).
    with sqlite3.connect(db) as conn:
        conn.execute("update runs set status='interrupted' where lr=0.05")
    before = _rows(db, "select id from runs")
    proc = run_cli(CRASH_GRID, cwd=work)
    assert proc.returncode == 1, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("skipping") == 1  # lr=0.01 only
    new = _rows(db, f"select lr, status from runs where id > {max(i for i, in before)} "
                    "order by lr")
    assert new == [(0.05, "completed"), (1e6, "failed")]  # two trainings actually ran
    assert _rows(db, "select count(*) from sweeps") == [(1,)]
    # The outcome is each configuration's latest attempt, not every row ever written.
    assert "1 of 3 run(s) failed" in proc.stderr


def test_resume_false_measures_everything_again(
    crashed: tuple[Path, subprocess.CompletedProcess],
) -> None:
    work, _ = crashed
    db = work / "results" / "sweeper.db"
    (count_before,) = _rows(db, "select count(*) from runs")[0]
    proc = run_cli([*CRASH_GRID, "sweeper.resume=false"], cwd=work)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "skipping" not in proc.stdout + proc.stderr
    assert _rows(db, "select count(*) from runs")[0][0] == count_before + 3
    assert _rows(db, "select count(*) from sweeps") == [(1,)]  # still the same sweep


def test_bad_option_in_a_later_job_stops_the_grid_before_any_training(tmp_path: Path) -> None:
    """Model (and dataset) options are checked for every job before the first one trains
    (dataset options: see test_validation_props.py)."""
    proc = run_cli(["-m", "model=mlp", "model.hidden=64,0", *TINY], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "hidden=0" in proc.stderr and "(in job:" in proc.stderr
    assert "Traceback" not in proc.stderr
    db = tmp_path / "results" / "sweeper.db"
    assert not db.exists() or _rows(db, "select count(*) from runs") == [(0,)]


def _sigint_as_a_terminal_sends_it() -> None:
    """In the child before exec: SIGINT to its default. A test run started in the
    background of a non-interactive shell inherits SIGINT ignored, and so would the sweep,
    which then never sees the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sig", "multirun", "exit_code", "error_type"),
    [
        (signal.SIGINT, True, 130, "KeyboardInterrupt"),
        (signal.SIGTERM, False, 143, "RunInterrupted"),
    ],
    ids=["sigint-multirun", "sigterm-single"],
)
def test_signal_mid_training_records_interrupted_run(
    tmp_path: Path, sig: signal.Signals, multirun: bool, exit_code: int, error_type: str
) -> None:
    env = cli_env()
    args = [sys.executable, "-m", "sweeper", *(["-m"] if multirun else []), *LONG_RUN]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_as_a_terminal_sends_it,
    )
    db = tmp_path / "results" / "sweeper.db"
    try:
        samples_before = wait_for_training(db, proc)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert elapsed < 10
    assert proc.returncode == exit_code, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    ((run_id, status, etype, message, e_tr, e_total, ended),) = _rows(
        db, "select id, status, error_type, error_message, energy_train_j, energy_total_j, "
            "ended_at from runs"
    )
    assert (status, etype) == ("interrupted", error_type)
    if sig == signal.SIGTERM:
        assert "SIGTERM" in message
    assert ended is not None and e_tr > 0 and e_total >= e_tr
    # The sampler's buffer was flushed on the way out: its final samples are stored too.
    samples = _rows(db, f"select count(*) from power_samples where run_id={run_id}")[0][0]
    assert samples > samples_before
    phase_sum = _rows(db, f"select sum(energy_j) from phases where run_id={run_id} "
                          "and kind='train_epoch'")[0][0]
    assert phase_sum == pytest.approx(e_tr)
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_run_killed_outright_is_recorded_interrupted_by_the_next_job_of_its_sweep(
    tmp_path: Path,
) -> None:
    """SIGKILL (the out-of-memory killer, a hard pre-emption) leaves no chance to record the
    run; the sweep's next job finds its process gone and records it before going on."""
    named = "sweeper.name=killed"
    pid = kill_mid_training(["-m", named, *LONG_RUN], tmp_path)
    db = tmp_path / "results" / "sweeper.db"
    ((killed_id, status, stored_pid),) = _rows(db, "select id, status, pid from runs")
    assert (status, stored_pid) == ("running", pid)  # nothing could record the end

    again = run_cli(["-m", named, "model=mlp", *TINY], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = _rows(db, "select id, status, error_type, error_message, ended_at, energy_train_j, "
                     "measurement_warning from runs order by id")
    (_, status, etype, message, ended, e_tr, warning), (_, new_status, *_) = rows
    assert (status, etype, new_status) == ("interrupted", "RunVanished", "completed")
    assert f"pid {pid}" in message and ended is not None
    # Its totals are what its finished epochs stored, and say they are a lower bound.
    epochs_j = _rows(db, f"select sum(energy_j) from phases where run_id={killed_id} "
                         "and kind='train_epoch'")[0][0]
    assert e_tr == pytest.approx(epochs_j) and e_tr > 0
    assert "lower bound" in warning
    assert "interrupted" in again.stdout
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
