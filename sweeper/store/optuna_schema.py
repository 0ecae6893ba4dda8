"""Creating Optuna's tables once when several workers start one search together.

Optuna's RDBStorage creates its tables and version rows on first use, without a lock:
two workers started at the same moment on a fresh database both try, and one fails
(SQLite: "UNIQUE constraint failed: alembic_version"; PostgreSQL: a duplicate table or
type). Each worker's callback prepares the schema before its search opens the study,
retrying until one of them has won; afterwards opening the storage only reads.
"""

from __future__ import annotations

import logging
import random
import time

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from sweeper.store.db import mask_url

log = logging.getLogger(__name__)

ATTEMPTS = 8


def prepare_optuna_schema(url: URL) -> None:
    """Make sure Optuna's tables exist in the database at url (idempotent)."""
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.get_backend_name() == "sqlite" else {}
    for attempt in range(1, ATTEMPTS + 1):
        try:
            storage = optuna.storages.RDBStorage(
                url.render_as_string(hide_password=False), engine_kwargs=engine_kwargs
            )
        except (DBAPIError, optuna.exceptions.StorageInternalError) as exc:
            # another worker is creating the same tables right now
            if attempt == ATTEMPTS:
                raise
            log.debug("Optuna schema in %s not ready (%s); retrying", mask_url(url), exc)
            time.sleep(0.2 * attempt + random.random() * 0.3)
            continue
        storage.engine.dispose()
        return
