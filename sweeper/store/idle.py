"""Idle baselines: the stored idle power of a host's measured domains, and its reuse."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from sweeper.store.db import Store
from sweeper.store.schema import IdleBaseline, utcnow


def fresh_baseline(
    store: Store, hardware_id: str, meter_source: str, max_age_h: float,
    now: datetime | None = None,
) -> IdleBaseline | None:
    """The newest baseline of this hardware and meter measured within max_age_h, or None."""
    cutoff = (now or utcnow()) - timedelta(hours=max_age_h)
    with store.session() as session:
        return session.scalar(
            select(IdleBaseline)
            .where(IdleBaseline.hardware_id == hardware_id,
                   IdleBaseline.meter_source == meter_source,
                   IdleBaseline.measured_at >= cutoff)
            .order_by(IdleBaseline.measured_at.desc(), IdleBaseline.id.desc())
        )


def add_baseline(store: Store, baseline: IdleBaseline) -> int:
    with store.session() as session:
        session.add(baseline)
        session.flush()
        return baseline.id
