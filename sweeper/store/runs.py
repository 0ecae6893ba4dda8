"""Short, single-purpose transactions on sweeps, runs, phases and samples.

Every write is its own small transaction so a crash or an interrupt loses at most the
row being written, and concurrent writers hold locks only briefly. Each one waits out a
store outage (sweeper.store.outage); the inserts say how to tell whether a try that failed
had in fact committed, so a retry never stores a row twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient

from sweeper.redact import mask_config, mask_secrets
from sweeper.store.db import Store
from sweeper.store.outage import retried
from sweeper.store.schema import Phase, PhaseDomainEnergy, PowerSample, Run, Sweep, utcnow


@retried("open the sweep")
def ensure_sweep(
    store: Store,
    name: str,
    *,
    kind: str = "grid",
    command: str = "",
    sweep_dir: str | None = None,
    study_name: str | None = None,
) -> int:
    """Id of the sweep called name, created if needed (safe when workers race)."""
    for _ in range(3):
        with store.session() as session:
            sweep = session.scalar(select(Sweep).where(Sweep.name == name))
            if sweep is not None:
                if sweep_dir and sweep.sweep_dir != sweep_dir:
                    sweep.sweep_dir = sweep_dir
                if study_name and not sweep.study_name:
                    sweep.study_name = study_name
                return sweep.id
        try:
            with store.session() as session:
                sweep = Sweep(
                    name=name, kind=kind, command=mask_secrets(command), sweep_dir=sweep_dir,
                    study_name=study_name,
                )
                session.add(sweep)
                session.flush()
                return sweep.id
        except IntegrityError:
            continue  # another worker created it first: read it back
    raise RuntimeError(f"could not create or find sweep {name!r}")


@retried("read the sweep")
def find_sweep(store: Store, name: str) -> Sweep | None:
    with store.session() as session:
        return session.scalar(select(Sweep).where(Sweep.name == name))


@retried("read the latest sweep")
def latest_sweep(store: Store) -> Sweep | None:
    with store.session() as session:
        return session.scalar(select(Sweep).order_by(Sweep.updated_at.desc(), Sweep.id.desc()))


def _done(sweep_id: int, unless_reason: str | None) -> ColumnElement[bool]:
    """Completed in the sweep, and (with ``unless_reason``) not stopped short of something
    the caller needs: its stop_reason does not begin with that."""
    done = (Run.sweep_id == sweep_id) & (Run.status == "completed")
    if unless_reason is None:
        return done
    return done & (Run.stop_reason.is_(None) | ~Run.stop_reason.startswith(unless_reason,
                                                                          autoescape=True))


@retried("look for a completed run of this configuration")
def completed_run_id(store: Store, sweep_id: int, config_hash: str,
                     unless_reason: str | None = None) -> int | None:
    """A completed run of this exact resolved config in this sweep, if any (one whose
    stop_reason begins with ``unless_reason`` does not count)."""
    with store.session() as session:
        return session.scalar(
            select(Run.id)
            .where(_done(sweep_id, unless_reason), Run.config_hash == config_hash)
            .order_by(Run.id.desc())
        )


@retried("read the sweep's completed configurations")
def completed_configs(store: Store, sweep_id: int, unless_reason: str | None = None,
                      ) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, config_hash, config) of every completed run in a sweep, newest first (as
    ``completed_run_id`` counts them)."""
    with store.session() as session:
        rows = session.execute(
            select(Run.id, Run.config_hash, Run.config)
            .where(_done(sweep_id, unless_reason))
            .order_by(Run.id.desc())
        ).all()
    return [(run_id, digest, config or {}) for run_id, digest, config in rows]


@retried("update a run's config hash")
def set_config_hash(store: Store, run_id: int, config_hash: str) -> None:
    with store.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(config_hash=config_hash))


def _fresh(*rows: object) -> None:
    """Ready ORM rows for a new try: a failed try's rollback leaves the ids it assigned."""
    for row in rows:
        if not sa_inspect(row).transient:
            make_transient(row)
        row.id = None  # type: ignore[attr-defined]


def _run_landed(store: Store, run: Run) -> int | None:
    if run.started_at is None:  # nothing tells this row from another: insert it again
        return None
    with store.session() as session:
        return session.scalar(
            select(Run.id).where(
                Run.sweep_id == run.sweep_id, Run.config_hash == run.config_hash,
                Run.host.is_not_distinct_from(run.host), Run.pid.is_not_distinct_from(run.pid),
                Run.started_at == run.started_at,
            )
        )


@retried("insert the run's row", landed=_run_landed)
def insert_run(store: Store, run: Run) -> int:
    # A password typed into storage.url must not reach the shared tables.
    run.overrides = mask_secrets(run.overrides or "")
    run.config = mask_config(run.config)
    _fresh(run)
    with store.session() as session:
        session.add(run)
        session.flush()
        session.execute(
            update(Sweep).where(Sweep.id == run.sweep_id).values(updated_at=func.now())
        )
        return run.id


@retried("update the run")
def update_run(store: Store, run_id: int, **values: Any) -> None:
    """Set columns of one run; names are the typed Run attributes."""
    unknown = [key for key in values if not hasattr(Run, key)]
    if unknown:
        raise AttributeError(f"Run has no column(s) {unknown}")
    with store.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(**values))


@retried("record a heartbeat")
def beat(store: Store, run_id: int) -> None:
    """Mark a running row alive now."""
    with store.session() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == "running")
            .values(heartbeat_at=utcnow())
        )


@retried("look for other runs of this configuration")
def earlier_twins(store: Store, sweep_id: int, config_hash: str, run_id: int) -> list[Run]:
    """Runs of the same config in the sweep, inserted before `run_id`, that completed or may
    still be running (oldest first)."""
    with store.session() as session:
        query = select(Run).where(
            Run.sweep_id == sweep_id, Run.config_hash == config_hash, Run.id < run_id,
            Run.status.in_(("running", "completed")),
        )
        return list(session.scalars(query.order_by(Run.id)))


@retried("give the run's row up")
def delete_run(store: Store, run_id: int) -> None:
    """Remove a row that recorded nothing yet (a claim given up to a twin)."""
    with store.session() as session:
        session.execute(delete(Run).where(Run.id == run_id))


@retried("read the running runs")
def running_runs(store: Store, sweep_id: int) -> list[Run]:
    with store.session() as session:
        query = select(Run).where(Run.sweep_id == sweep_id, Run.status == "running")
        return list(session.scalars(query.order_by(Run.id)))


@retried("read the phases of a run")
def phase_totals(store: Store, run_id: int) -> dict[str, tuple[float, float]]:
    """Energy (J) and duration (s) of a run's stored phases, by kind."""
    with store.session() as session:
        rows = session.execute(
            select(Phase.kind, func.sum(Phase.energy_j), func.sum(Phase.duration_s))
            .where(Phase.run_id == run_id)
            .group_by(Phase.kind)
        )
        return {kind: (energy_j or 0.0, duration_s or 0.0) for kind, energy_j, duration_s in rows}


@retried("record a vanished run")
def mark_vanished(
    store: Store, run_id: int, seen_heartbeat_at: datetime | None, message: str,
    **values: Any,
) -> bool:
    """Record a run whose process is gone as interrupted (with values, other columns),
    unless it has moved on since it was judged (finished, or beat again): the update is
    conditional, so a live run is never overwritten. True if the row was changed."""
    with store.session() as session:
        result = session.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.status == "running",
                Run.heartbeat_at.is_not_distinct_from(seen_heartbeat_at),
            )
            .values(
                status="interrupted", error_type="RunVanished", error_message=message[:4000],
                ended_at=utcnow(), **values,
            )
        )
        return bool(result.rowcount)


def _phase_landed(
    store: Store, phase: Phase, domains: Sequence[PhaseDomainEnergy] = ()
) -> int | None:
    with store.session() as session:
        return session.scalar(
            select(Phase.id).where(
                Phase.run_id == phase.run_id, Phase.kind == phase.kind,
                Phase.index == phase.index, Phase.start_s == phase.start_s,
            )
        )


@retried("store a phase", landed=_phase_landed)
def add_phase(store: Store, phase: Phase, domains: Sequence[PhaseDomainEnergy] = ()) -> int:
    _fresh(phase, *domains)
    with store.session() as session:
        phase.domains = list(domains)
        session.add(phase)
        session.flush()
        return phase.id


def _samples_landed(store: Store, rows: Sequence[dict[str, Any]]) -> int | None:
    if not rows:
        return 0
    first = rows[0]
    with store.session() as session:
        found = session.scalar(
            select(PowerSample.id).where(
                PowerSample.run_id == first["run_id"], PowerSample.t_s == first["t_s"],
                PowerSample.domain == first["domain"],
            ).limit(1)
        )
    return None if found is None else len(rows)


@retried("store power samples", landed=_samples_landed)
def add_samples(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Bulk insert of power samples (dicts of PowerSample columns), one transaction: a
    batch is stored whole or not at all."""
    if rows:
        with store.session() as session:
            session.execute(insert(PowerSample), list(rows))
    return len(rows)


@retried("read a run")
def get_run(store: Store, run_id: int) -> Run | None:
    with store.session() as session:
        return session.get(Run, run_id)


@retried("read the runs of the sweep")
def sweep_runs(store: Store, sweep_id: int) -> list[Run]:
    with store.session() as session:
        return list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


@retried("read the phases of a run")
def run_phases(store: Store, run_id: int) -> list[Phase]:
    with store.session() as session:
        return list(session.scalars(select(Phase).where(Phase.run_id == run_id).order_by(Phase.id)))
