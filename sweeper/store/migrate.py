"""Upgrading databases written by older sweeper versions.

Each step moves a database one schema version forward; all steps run in one transaction
(DDL is transactional on SQLite and PostgreSQL), so a failed upgrade leaves the old
database as it was. A version with no step is refused. The transaction holds the schema
lock and re-reads the version, so workers opening an old database at once upgrade it
once. A numbered step table rather than Alembic: one file, no migration environment to
ship, and the same code on both back ends; a step that adds a column must ALTER TABLE
itself (create_all only adds missing tables).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Engine, select, text, update

from sweeper.errors import StoreError
from sweeper.store.schema import (
    SCHEMA_VERSION,
    Base,
    Phase,
    PhaseDomainEnergy,
    Run,
    SchemaInfo,
    utcnow,
)


def _add_columns(conn: Connection, columns: Sequence[Column[Any]]) -> None:
    """ALTER TABLE ... ADD COLUMN for each (nullable) column, typed for this back end."""
    for column in columns:
        sql_type = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {sql_type}"))


def _add_run_liveness(conn: Connection) -> None:
    """1 -> 2: runs.pid and runs.heartbeat_at (NULL for runs written before)."""
    _add_columns(conn, [Run.__table__.c.pid, Run.__table__.c.heartbeat_at])


def _add_energy_uncertainty(conn: Connection) -> None:
    """2 -> 3: energy uncertainty of runs, phases and phase domains, and the phase flag
    (NULL for what was written before: its uncertainty was not known)."""
    runs, phases = Run.__table__.c, Phase.__table__.c
    _add_columns(conn, [
        runs.energy_train_uncertainty_j, runs.energy_eval_uncertainty_j,
        runs.energy_inference_uncertainty_j, runs.energy_total_uncertainty_j,
        phases.energy_uncertainty_j, phases.energy_flag,
        PhaseDomainEnergy.__table__.c.energy_uncertainty_j,
    ])


GPU_MEANING_COLUMNS = {
    "runs": (
        "energy_train_net_j", "energy_inference_net_j", "energy_total_net_j",
        "energy_per_train_sample_net_j", "energy_per_inference_sample_net_j", "idle_power_w",
        "idle_baseline_id", "other_cpu_pct", "load_avg_1m", "machine_busy",
    ),
    "phases": ("low_resolution",),
}


def _add_gpu_meaning(conn: Connection) -> None:
    """3 -> 4: net-of-idle energies, idle power and machine load on runs, and
    phases.low_resolution (NULL for rows written before). idle_baselines is a new table:
    create_all adds it."""
    _add_columns(conn, [
        Base.metadata.tables[table].c[name]
        for table, names in GPU_MEANING_COLUMNS.items() for name in names
    ])


def _add_ptflops_macs(conn: Connection) -> None:
    """4 -> 5: runs.macs_ptflops_per_sample, the study's MACs convention (NULL for runs
    written before: rebuild a model to get it)."""
    _add_columns(conn, [Run.__table__.c.macs_ptflops_per_sample])


def _add_forecast_interval(conn: Connection) -> None:
    """5 -> 6: the forecast's 90% interval on runs (NULL for runs written before)."""
    _add_columns(conn, [Run.__table__.c.forecast_energy_train_low_j,
                        Run.__table__.c.forecast_energy_train_high_j])


def _add_layer_costs(conn: Connection) -> None:
    """6 -> 7: layer_costs is a new table (mode=layers); create_all adds it."""


# from_version -> function upgrading a connection to from_version + 1
STEPS: dict[int, Callable[[Connection], None]] = {
    1: _add_run_liveness,
    2: _add_energy_uncertainty,
    3: _add_gpu_meaning,
    4: _add_ptflops_macs,
    5: _add_forecast_interval,
    6: _add_layer_costs,
}


# Any constant: PostgreSQL advisory lock id that serialises schema creation and upgrades.
_SCHEMA_LOCK_ID = 0x5EE9E4


def lock_schema(conn: Connection) -> None:
    """Hold the schema lock until this transaction ends, so workers opening a fresh (or an
    old) database at the same instant do not all try to create (or upgrade) its tables.
    SQLite needs nothing: BEGIN IMMEDIATE already serialises writers."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})


def upgrade(engine: Engine, from_version: int) -> None:
    _check_steps(from_version, StoreError)
    with engine.begin() as conn:
        lock_schema(conn)
        # Another process may have upgraded it since from_version was read.
        current = conn.execute(select(SchemaInfo.version)).scalar()
        if current is None or current >= SCHEMA_VERSION:
            return
        _check_steps(current, StoreError)
        for version in range(current, SCHEMA_VERSION):
            try:
                STEPS[version](conn)
            except Exception as exc:  # rolled back with the whole transaction
                raise StoreError(
                    f"upgrading the database from schema version {version} failed "
                    f"({type(exc).__name__}: {exc}); it was left unchanged at version {current}"
                ) from exc
        conn.execute(update(SchemaInfo).values(version=SCHEMA_VERSION, updated_at=utcnow()))


def _check_steps(from_version: int, error: type[Exception]) -> None:
    missing = [v for v in range(from_version, SCHEMA_VERSION) if v not in STEPS]
    if missing:
        raise error(
            f"database schema version {from_version} cannot be upgraded to {SCHEMA_VERSION} "
            f"(no migration from version {missing[0]}); export it with an older sweeper"
        )
