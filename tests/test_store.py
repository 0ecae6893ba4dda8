"""The SQLite store through real files: schema, version checks, masking, writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from sweeper.errors import StoreError
from sweeper.store import SCHEMA_VERSION, Phase, PhaseDomainEnergy, Run, mask_url
from sweeper.store import runs as store_runs
from sweeper.store.db import Store
from tests.conftest import run_row


def _run(sweep_id: int, status: str = "running") -> Run:
    return run_row(sweep_id, config={"model": {"name": "mlp"}}, status=status)


def test_new_file_gets_schema_and_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "s.db"
    store = Store(f"sqlite:///{path}")
    assert path.exists()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT version FROM schema_info").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    assert version == SCHEMA_VERSION
    assert mode == "wal"
    store.dispose()


def test_runs_phases_and_samples_round_trip(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    sweep_id = store_runs.ensure_sweep(store, "grid: a", command="model=mlp")
    assert store_runs.ensure_sweep(store, "grid: a") == sweep_id
    run_id = store_runs.insert_run(store, _run(sweep_id))
    store_runs.add_phase(
        store,
        Phase(run_id=run_id, kind="train_epoch", index=0, start_s=0.0, duration_s=1.5,
              energy_j=12.0),
        [PhaseDomainEnergy(domain="cpu", source="estimate", energy_j=12.0)],
    )
    store_runs.add_samples(
        store,
        [{"run_id": run_id, "t_s": 0.1 * i, "domain": "cpu", "source": "estimate",
          "power_w": 10.0, "energy_j": float(i)} for i in range(5)],
    )
    store_runs.update_run(store, run_id, status="completed", energy_train_j=12.0)
    assert store_runs.completed_run_id(store, sweep_id, "h") == run_id
    assert store_runs.completed_run_id(store, sweep_id, "other") is None
    phases = store_runs.run_phases(store, run_id)
    assert [(p.kind, p.energy_j) for p in phases] == [("train_epoch", 12.0)]
    with store.session() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == "completed"
        assert len(session.scalars(select(PhaseDomainEnergy)).all()) == 1
    with pytest.raises(AttributeError, match="no column"):
        store_runs.update_run(store, run_id, energy_typo_j=1.0)


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this sweeper"):
        Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_info").fetchone()[0] == SCHEMA_VERSION + 1


def test_older_schema_without_migration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_info SET version = 0")
    with pytest.raises(StoreError, match="cannot be upgraded"):
        Store(f"sqlite:///{path}")


def test_foreign_database_with_our_table_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, x TEXT)")
        conn.execute("INSERT INTO runs (x) VALUES ('keep me')")
    with pytest.raises(StoreError, match="not written by this tool"):
        Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT x FROM runs").fetchall() == [("keep me",)]


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot open the store"):
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")


def test_password_is_masked() -> None:
    masked = mask_url("postgresql+psycopg://alice:s3cret@db.example:5432/sweeps")
    assert "s3cret" not in masked and "alice" in masked and "***" in masked


def test_error_message_never_shows_password() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(info.value)


def test_postgres_round_trip(pg_url: str) -> None:
    store = Store(pg_url)
    sweep_id = store_runs.ensure_sweep(store, "grid: pg")
    run_id = store_runs.insert_run(store, _run(sweep_id, status="completed"))
    assert store_runs.completed_run_id(store, sweep_id, "h") == run_id
    store.dispose()
    again = Store(pg_url)  # reopening checks the stored schema version
    assert [r.id for r in store_runs.sweep_runs(again, sweep_id)] == [run_id]
    again.dispose()
