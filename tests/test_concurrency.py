"""Several real processes writing one store at once: no lost rows, no "database is locked".

Parallel Hydra launchers and several Optuna workers all write the same SQLite file (or
the same PostgreSQL database); these tests start separate interpreters so locking is the
database's, not the GIL's.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sweeper.store import PhaseDomainEnergy, PowerSample, Run, Store, Sweep, open_store
from sweeper.store import runs as store_runs
from tests.conftest import ROOT, TINY, cli_env

WRITER = Path(__file__).with_name("store_writer.py")
WORKERS = 4
RUNS_PER_WORKER = 50
SAMPLES_PER_RUN = 5  # as in store_writer.py


def _run_writers(url: str, sweep: str) -> None:
    """Start WORKERS writer processes that begin writing at the same instant."""
    start_at = time.time() + 3.0  # after every interpreter has imported SQLAlchemy
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), url, sweep, str(w), str(RUNS_PER_WORKER), str(start_at)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(WORKERS)
    ]
    failures = []
    for w, proc in enumerate(procs):
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            failures.append(f"worker {w} exited {proc.returncode}:\n{err[-2000:]}")
        assert "database is locked" not in out + err
    assert not failures, "\n".join(failures)


def _check_all_rows(url: str, sweep: str) -> None:
    store = open_store(url)
    with store.session() as session:
        sweeps = session.scalars(select(Sweep).where(Sweep.name == sweep)).all()
        assert len(sweeps) == 1, "racing workers must share one sweep row"
        runs = session.execute(select(Run.config_hash, Run.status)).all()
        samples = session.scalar(select(func.count()).select_from(PowerSample))
        domains = session.scalar(select(func.count()).select_from(PhaseDomainEnergy))
    expected = {f"w{w}-r{i}" for w in range(WORKERS) for i in range(RUNS_PER_WORKER)}
    assert len(runs) == WORKERS * RUNS_PER_WORKER == 200
    assert {h for h, _ in runs} == expected
    assert {s for _, s in runs} == {"completed"}
    assert samples == 200 * SAMPLES_PER_RUN
    assert domains == 200
    store.dispose()


def test_fresh_file_opens_while_another_worker_still_holds_its_write_lock(tmp_path: Path) -> None:
    """Workers opening a fresh file at once: while one holds the write lock and the file is
    still in rollback mode, SQLite refuses another's switch to WAL at once (no busy
    handler); opening must wait for the lock like any statement does."""
    db = tmp_path / "fresh.db"
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE scratch (a)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO scratch VALUES (1)")
    release = threading.Timer(0.5, other.execute, ("COMMIT",))
    release.start()
    t0 = time.monotonic()
    try:
        store = Store(f"sqlite:///{db}")
    finally:
        release.join()
        other.close()
    assert time.monotonic() - t0 >= 0.4  # it waited for the lock instead of failing
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert store_runs.ensure_sweep(store, "grid: after the wait") > 0
    store.dispose()


def test_four_processes_write_one_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"  # does not exist yet: schema creation races too
    url = f"sqlite:///{db}"
    _run_writers(url, "grid: concurrent")
    _check_all_rows(url, "grid: concurrent")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.postgres
def test_four_processes_write_one_postgres_database(pg_url: str) -> None:
    _run_writers(pg_url, "grid: concurrent")  # a fresh schema: table creation races too
    _check_all_rows(pg_url, "grid: concurrent")


@pytest.mark.slow
def test_two_cli_sweeps_share_one_sqlite_file(tmp_path: Path) -> None:
    """Two real multiruns (different sweeps) launched together into one file."""
    db = tmp_path / "shared.db"
    env = cli_env()
    grids = (["-m", "model=mlp"], ["-m", "model=cnn"])
    procs = []
    for n, grid in enumerate(grids):
        cwd = tmp_path / f"launch{n}"  # separate Hydra output dirs, one database
        cwd.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sweeper", *grid, *TINY, f"storage.url=sqlite:///{db}"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        assert "database is locked" not in out + err
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select model, batch, status from runs order by model").fetchall()
        sweeps = conn.execute("select count(*) from sweeps").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert rows == [("cnn", 64, "completed"), ("mlp", 64, "completed")]
    assert sweeps == 2
