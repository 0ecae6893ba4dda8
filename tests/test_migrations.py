"""Schema versioning: a database written by an older sweeper is upgraded by the numbered
steps in sweeper.store.migrate, atomically, or refused; never half-changed.

The shipped steps (1 -> 2 -> 3) run on older databases rebuilt from the current schema by
dropping what later versions added; the failure and refusal paths pretend the code is one
version ahead with a synthetic step.
Both against real SQLite files and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Connection, create_engine, inspect, select, text

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


# (table, column) added by each version, newest first: dropping them rebuilds older files.
ADDED_IN: dict[int, list[tuple[str, str]]] = {
    7: [],  # the layer_costs table (no column: dropped below)
    6: [("runs", "forecast_energy_train_low_j"), ("runs", "forecast_energy_train_high_j")],
    5: [("runs", "macs_ptflops_per_sample")],
    4: [(table, c) for table, names in migrate.GPU_MEANING_COLUMNS.items() for c in names],
    3: [("runs", c) for c in ("energy_train_uncertainty_j", "energy_eval_uncertainty_j",
                              "energy_inference_uncertainty_j", "energy_total_uncertainty_j")]
       + [("phases", "energy_uncertainty_j"), ("phases", "energy_flag"),
          ("phase_domain_energy", "energy_uncertainty_j")],
    2: [("runs", "pid"), ("runs", "heartbeat_at")],
}


def _as_written_by(store: Store, version: int) -> None:
    """Make a current database look as ``version`` wrote it."""
    with store.engine.begin() as conn:
        for newer in range(SCHEMA_VERSION, version, -1):
            for table, column in ADDED_IN[newer]:
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        if version < 4:
            conn.execute(text("DROP TABLE IF EXISTS idle_baselines"))  # new in 4, no step
        if version < 7:
            conn.execute(text("DROP TABLE IF EXISTS layer_costs"))  # new in 7
        conn.execute(text(f"UPDATE schema_info SET version = {version}"))


def _columns(store_url: str, table: str) -> set[str]:
    from sqlalchemy import create_engine

    engine = create_engine(store_url)
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns(table)}
    engine.dispose()
    return columns


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
    _as_written_by(store, 1)
    store.dispose()
    version, columns = _version_and_columns(url)
    assert version == 1 and not {"pid", "heartbeat_at"} & columns

    store = Store(url)
    version, columns = _version_and_columns(url)
    assert version == SCHEMA_VERSION == 7 and {"pid", "heartbeat_at"} <= columns
    run = store_runs.get_run(store, finished)
    assert run is not None and run.status == "completed" and run.pid is None
    assert reclaim_vanished_runs(store, sweep_id) == [left_running]
    store.dispose()


def test_version_2_database_gets_uncertainty_columns_empty_and_takes_new_phases(url: str) -> None:
    """Version 2 stored no uncertainty: upgraded rows have it NULL (unknown, not zero), and
    phases written afterwards store theirs and their flag."""
    from sweeper.store import Phase, PhaseDomainEnergy

    run_id = _old_database(url)
    store = Store(url)
    old_phase = store_runs.add_phase(
        store, Phase(run_id=run_id, kind="train_epoch", start_s=0.0, duration_s=1.0,
                     energy_j=5.0),
        [PhaseDomainEnergy(domain="cpu", source="estimate", energy_j=5.0)],
    )
    _as_written_by(store, 2)
    store.dispose()
    assert _version_and_columns(url)[0] == 2
    assert "energy_flag" not in _columns(url, "phases")

    store = Store(url)
    version, run_columns = _version_and_columns(url)
    assert version == SCHEMA_VERSION and "energy_total_uncertainty_j" in run_columns
    assert {"energy_uncertainty_j", "energy_flag"} <= _columns(url, "phases")
    assert "energy_uncertainty_j" in _columns(url, "phase_domain_energy")
    new_phase = store_runs.add_phase(
        store, Phase(run_id=run_id, kind="eval", start_s=1.0, duration_s=0.01, energy_j=None,
                     energy_uncertainty_j=0.4, energy_flag="mean power 1768 W exceeds 875 W"),
        [],
    )
    store_runs.update_run(store, run_id, energy_train_uncertainty_j=0.25)
    with store.session() as session:
        rows = dict(session.execute(
            select(Phase.id, Phase.energy_uncertainty_j).where(Phase.run_id == run_id)
        ).all())
        flag = session.get(Phase, new_phase).energy_flag
    assert rows == {old_phase: None, new_phase: 0.4} and flag.startswith("mean power 1768 W")
    run = store_runs.get_run(store, run_id)
    assert run is not None and run.energy_train_uncertainty_j == 0.25
    assert run.energy_total_uncertainty_j is None


def test_version_3_database_gets_net_and_load_columns(url: str) -> None:
    """3 -> 4: the net-of-idle, idle power and machine-load columns arrive empty, old rows
    keep their values, and the idle_baselines table is created."""
    finished = _old_database(url)
    store = Store(url)
    _as_written_by(store, 3)
    store.dispose()
    assert _version_and_columns(url)[0] == 3
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


@pytest.mark.parametrize(("version", "kept"), [
    (4, ("macs_per_sample", 123.0)),  # 4 -> 5: runs.macs_ptflops_per_sample
    (5, ("forecast_energy_train_j", 42.0)),  # 5 -> 6: the forecast's 90% interval
])
def test_a_version_gets_its_new_run_columns_empty_and_keeps_its_rows(
    url: str, version: int, kept: tuple[str, float]
) -> None:
    """The columns a version adds to runs arrive empty; what old rows hold is kept."""
    column, value = kept
    added = [c for _, c in ADDED_IN[version + 1]]
    store = Store(url)
    finished = store_runs.insert_run(store, run_row(
        store_runs.ensure_sweep(store, "grid: old"), status="completed", **{column: value}))
    _as_written_by(store, version)
    store.dispose()
    old_version, columns = _version_and_columns(url)
    assert old_version == version and not set(added) & columns
    store = Store(url)
    new_version, columns = _version_and_columns(url)
    assert new_version == SCHEMA_VERSION and set(added) <= columns
    run = store_runs.get_run(store, finished)
    assert run is not None and getattr(run, column) == value
    assert all(getattr(run, c) is None for c in added)


def test_version_6_database_gets_the_layer_costs_table_and_keeps_its_runs(url: str) -> None:
    """6 -> 7: layer_costs (mode=layers' catalog) is created empty; runs are kept."""
    finished = _old_database(url)
    store = Store(url)
    _as_written_by(store, 6)
    store.dispose()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert "layer_costs" not in inspect(conn).get_table_names()
    engine.dispose()
    store = Store(url)
    assert _version_and_columns(url)[0] == SCHEMA_VERSION
    with store.engine.connect() as conn:
        assert "layer_costs" in inspect(conn).get_table_names()
        assert conn.execute(text("select count(*) from layer_costs")).scalar() == 0
    run = store_runs.get_run(store, finished)
    assert run is not None and run.status == "completed"
    store.dispose()
    store.dispose()
