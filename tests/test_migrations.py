"""Schema versioning: a database written by an older sweeper is upgraded by the numbered
steps in sweeper.store.migrate, atomically, or refused; never half-changed.

The shipped step (1 -> 2) runs on a version-1 database rebuilt from the current schema; the
failure and refusal paths pretend the code is one version ahead with a synthetic step.
Both against real SQLite files and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Connection, inspect, select, text

from sweeper.errors import StoreError
from sweeper.store import SCHEMA_VERSION, migrate
from sweeper.store import runs as store_runs
from sweeper.store.db import Store
from sweeper.store.schema import SchemaInfo
from tests.conftest import run_row

OLD, NEW = SCHEMA_VERSION, SCHEMA_VERSION + 1


def _add_note_column(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'migrated'"))


def _half_then_fail(conn: Connection) -> None:
    _add_note_column(conn)
    raise RuntimeError("disk on fire")


def _old_database(url: str) -> int:
    """A database as the previous version wrote it, holding one finished run."""
    store = Store(url)
    sweep_id = store_runs.ensure_sweep(store, "grid: old")
    run_id = store_runs.insert_run(
        store,
        run_row(sweep_id, status="completed"),
    )
    store.dispose()
    return run_id


def _pretend_newer_code(
    monkeypatch: pytest.MonkeyPatch, step: Callable[[Connection], None]
) -> list[int]:
    calls: list[int] = []

    def counted(conn: Connection) -> None:
        calls.append(1)
        step(conn)

    monkeypatch.setattr("sweeper.store.db.SCHEMA_VERSION", NEW)
    monkeypatch.setattr("sweeper.store.migrate.SCHEMA_VERSION", NEW)
    monkeypatch.setitem(migrate.STEPS, OLD, counted)
    return calls


def _version_and_columns(store_url: str) -> tuple[int, set[str]]:
    from sqlalchemy import create_engine

    engine = create_engine(store_url)
    with engine.connect() as conn:
        version = conn.execute(select(SchemaInfo.version)).scalar_one()
        columns = {c["name"] for c in inspect(conn).get_columns("runs")}
    engine.dispose()
    return version, columns


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else sqlite_url


def test_older_database_is_upgraded_once_and_keeps_its_rows(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _old_database(url)
    calls = _pretend_newer_code(monkeypatch, _add_note_column)
    store = Store(url)
    version, columns = _version_and_columns(url)
    assert version == NEW and "note" in columns
    with store.session() as session:
        assert session.execute(text(f"SELECT note FROM runs WHERE id={run_id}")).scalar() == (
            "migrated"
        )
    assert store_runs.get_run(store, run_id) is not None
    # A second worker that read the old version before the upgrade does not re-apply it.
    migrate.upgrade(store.engine, OLD)
    Store(url).dispose()
    assert len(calls) == 1
    store.dispose()


def test_failed_upgrade_leaves_the_database_unchanged(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _old_database(url)
    _pretend_newer_code(monkeypatch, _half_then_fail)
    with pytest.raises(StoreError, match=f"disk on fire.*left unchanged at version {OLD}"):
        Store(url)
    version, columns = _version_and_columns(url)
    assert version == OLD and "note" not in columns  # the ALTER TABLE was rolled back
    monkeypatch.undo()
    store = Store(url)  # the current code still opens it as before
    assert store_runs.get_run(store, run_id) is not None
    store.dispose()


def test_missing_step_is_refused_without_touching_the_file(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _old_database(sqlite_url)
    monkeypatch.setattr("sweeper.store.db.SCHEMA_VERSION", NEW)
    monkeypatch.setattr("sweeper.store.migrate.SCHEMA_VERSION", NEW)
    with pytest.raises(StoreError, match=f"no migration from version {OLD}"):
        Store(sqlite_url)
    assert _version_and_columns(sqlite_url)[0] == OLD


def test_version_1_database_gets_the_liveness_columns_and_keeps_its_runs(url: str) -> None:
    """Version 1 had no runs.pid / runs.heartbeat_at: upgraded rows have them empty, and a
    run that version 1 left 'running' long ago is then reclaimed like any silent run."""
    from datetime import timedelta

    from sweeper.run.liveness import STALE_AFTER_S, reclaim_vanished_runs
    from sweeper.store.schema import utcnow

    finished = _old_database(url)
    store = Store(url)
    sweep_id = store_runs.ensure_sweep(store, "grid: old")
    left_running = store_runs.insert_run(
        store,
        run_row(sweep_id, config_hash="r", status="running", host="old-node",
                started_at=utcnow() - timedelta(seconds=STALE_AFTER_S + 60)),
    )
    with store.engine.begin() as conn:  # what version 1 wrote
        conn.execute(text("ALTER TABLE runs DROP COLUMN pid"))
        conn.execute(text("ALTER TABLE runs DROP COLUMN heartbeat_at"))
        _drop_gpu_meaning(conn)
        conn.execute(text("UPDATE schema_info SET version = 1"))
    store.dispose()
    version, columns = _version_and_columns(url)
    assert version == 1 and not {"pid", "heartbeat_at"} & columns

    store = Store(url)
    version, columns = _version_and_columns(url)
    assert version == SCHEMA_VERSION and {"pid", "heartbeat_at"} <= columns
    run = store_runs.get_run(store, finished)
    assert run is not None and run.status == "completed" and run.pid is None
    assert reclaim_vanished_runs(store, sweep_id) == [left_running]
    store.dispose()


def _drop_gpu_meaning(conn: Connection) -> None:
    """Back to what version 2 wrote: no net/idle/load columns, no phases.low_resolution."""
    for table, names in migrate.GPU_MEANING_COLUMNS.items():
        for name in names:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {name}"))
    conn.execute(text("DROP TABLE idle_baselines"))


def test_version_2_database_gets_net_and_load_columns(url: str) -> None:
    """2 -> 3 (h-gpu): the new columns arrive empty, old rows keep their values, and the
    idle_baselines table is created."""
    finished = _old_database(url)
    store = Store(url)
    with store.engine.begin() as conn:
        _drop_gpu_meaning(conn)
        conn.execute(text("UPDATE schema_info SET version = 2"))
    store.dispose()
    assert _version_and_columns(url)[0] == 2
    store = Store(url)
    version, columns = _version_and_columns(url)
    assert version == SCHEMA_VERSION
    assert set(migrate.GPU_MEANING_COLUMNS["runs"]) <= columns
    with store.engine.connect() as conn:
        assert "idle_baselines" in inspect(conn).get_table_names()
        assert "low_resolution" in {c["name"] for c in inspect(conn).get_columns("phases")}
    run = store_runs.get_run(store, finished)
    assert run is not None and run.status == "completed" and run.energy_train_net_j is None
    store.dispose()
