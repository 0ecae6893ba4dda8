"""Upgrading databases written by older sweeper versions.

Each step moves a database one schema version forward inside one transaction, so a
failed upgrade leaves the old database as it was. A version with no step is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, update

from sweeper.store.schema import SCHEMA_VERSION, SchemaInfo

# from_version -> function upgrading a connection to from_version + 1
STEPS: dict[int, Callable[[Connection], None]] = {}


def upgrade(engine: Engine, from_version: int) -> None:
    from sweeper.store.db import StoreError

    missing = [v for v in range(from_version, SCHEMA_VERSION) if v not in STEPS]
    if missing:
        raise StoreError(
            f"database schema version {from_version} cannot be upgraded to {SCHEMA_VERSION} "
            f"(no migration from version {missing[0]}); export it with an older sweeper"
        )
    with engine.begin() as conn:
        for version in range(from_version, SCHEMA_VERSION):
            STEPS[version](conn)
        conn.execute(update(SchemaInfo).values(version=SCHEMA_VERSION))
