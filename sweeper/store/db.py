"""Opening a store: one engine per URL, checked before any training starts.

SQLite is the default (one file under results/); PostgreSQL is the shared store when
sweeps span machines. Both go through the same code. SQLite gets WAL, a busy timeout
(60 s, or the URL's `?timeout=SECONDS`) and BEGIN IMMEDIATE so several processes can write
one file without "database is locked" errors. A server connection attempt gives up after
CONNECT_TIMEOUT_S (or the URL's `connect_timeout`), so an unreachable host fails a try
rather than hanging it; sweeper.store.outage retries such failures for `outage_s`.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from sweeper.errors import StoreError
from sweeper.redact import mask_secrets
from sweeper.store.migrate import lock_schema, upgrade
from sweeper.store.schema import SCHEMA_VERSION, Base, SchemaInfo

SQLITE_BUSY_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10
# How long a store may be unreachable before sweeper gives up (storage.outage_s).
DEFAULT_OUTAGE_S = 180.0
# Below this much free space, SQLite's "disk I/O error" (it could not grow its journal or
# shared-memory file) means a full disk.
FULL_DISK_FREE_BYTES = 1 << 20


def mask_url(url: str | URL) -> str:
    """Render a URL with its password hidden, for logs, tables and stored rows."""
    try:
        # password=... in the query string is a libpq keyword SQLAlchemy does not hide.
        return mask_secrets(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "<unparseable database URL>"


def resolve_url(url: str, base_dir: str | Path | None = None) -> URL:
    """Parse a URL, anchoring a relative SQLite path at base_dir and filling a password
    from the environment (SWEEPER_DB_PASSWORD or libpq's PGPASSWORD) so it never has to
    appear on a command line."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"storage.url={mask_secrets(url)!r} is not a database URL; expected e.g. "
            "sqlite:///results/sweeper.db or postgresql+psycopg://user@host/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            parsed = parsed.set(database=str(path))
    elif parsed.password is None:
        password = os.environ.get("SWEEPER_DB_PASSWORD") or os.environ.get("PGPASSWORD")
        if password:
            parsed = parsed.set(password=password)
    return parsed


def sqlite_busy_timeout_s(url: URL) -> float:
    """The URL's `?timeout=SECONDS` (as the sqlite3 driver reads it), else 60 s."""
    value = url.query.get("timeout")
    if value is None:
        return SQLITE_BUSY_TIMEOUT_S
    try:
        timeout_s = float(value if isinstance(value, str) else value[-1])
    except ValueError:
        timeout_s = -1.0
    if not timeout_s >= 0:  # also NaN
        raise StoreError(
            f"invalid value for the timeout in storage.url: {value!r}; allowed: seconds >= 0"
        )
    return timeout_s


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        options = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        return create_engine(url, pool_pre_ping=True, connect_args=options)
    database = url.database or ""
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {folder} for the SQLite database ({exc.strerror}); "
                "choose a writable storage.url"
            ) from exc
    busy_timeout_s = sqlite_busy_timeout_s(url)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # The driver's own transaction handling is replaced by BEGIN IMMEDIATE below:
        # a deferred transaction that later writes can fail at once with SQLITE_BUSY,
        # without waiting for the busy timeout.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        _switch_to_wal(cursor, busy_timeout_s)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _switch_to_wal(cursor: sqlite3.Cursor, busy_timeout_s: float) -> None:
    """PRAGMA journal_mode=WAL, waiting out other writers like any statement would.

    While another connection holds a write lock on a file still in rollback mode (a worker
    creating a fresh database), SQLite refuses the switch at once with "database is locked"
    instead of calling the busy handler (its deadlock avoidance), so the wait is ours.
    """
    deadline = time.monotonic() + busy_timeout_s
    delay_s = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay_s > deadline:
                raise
        time.sleep(delay_s)
        delay_s = min(2 * delay_s, 0.2)


def _size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def free_space(path: str | Path) -> tuple[Path, int | None]:
    """The nearest existing folder of `path` and its free bytes (None: unknown)."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return folder, shutil.disk_usage(folder).free
    except OSError:
        return folder, None


def disk_full(exc: BaseException, url: URL) -> str | None:
    """"the disk holding PATH is full (N free)" when `exc` (a write's failure) means no
    space is left on the store's disk, else None."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).lower()
    no_space = (
        "database or disk is full" in text or "no space left on device" in text
        or getattr(cause, "errno", None) == errno.ENOSPC
        or getattr(cause, "sqlstate", None) == "53100"  # PostgreSQL's disk_full
    )
    if url.get_backend_name() != "sqlite":
        return f"the database server's disk is full ({str(cause).strip().splitlines()[0]})" \
            if no_space else None
    path = url.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    folder, free = free_space(path)
    if no_space or ("disk i/o error" in text and free is not None
                    and free < FULL_DISK_FREE_BYTES):
        shown = "unknown" if free is None else _size(free)
        return f"the disk holding {path} is full ({shown} free in {folder})"
    return None


class Store:
    """An opened, schema-checked database."""

    def __init__(self, url: str, base_dir: str | Path | None = None) -> None:
        self.url = resolve_url(url, base_dir)
        self.display_url = mask_url(self.url)
        self.outage_s = DEFAULT_OUTAGE_S  # how long writes and reads wait out an outage
        try:
            self.engine = _make_engine(self.url)
        except NoSuchModuleError as exc:
            raise StoreError(f"no database driver for {self.display_url}: {exc}") from exc
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"the driver for {self.display_url} is not installed ({exc.name})"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._check_schema()

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def _check_schema(self) -> None:
        try:
            with self.engine.begin() as conn:
                lock_schema(conn)
                tables = set(inspect(conn).get_table_names())
                if "schema_info" not in tables:
                    ours = {t.name for t in Base.metadata.sorted_tables}
                    if tables & ours:
                        raise StoreError(
                            f"{self.display_url} holds sweeper tables but no schema_info "
                            "row: it was not written by this tool; refusing to touch it"
                        )
                    Base.metadata.create_all(conn)
                    conn.execute(
                        SchemaInfo.__table__.insert().values(
                            id=1, version=SCHEMA_VERSION, written_by=_written_by()
                        )
                    )
                    return
                version = conn.execute(select(SchemaInfo.version)).scalar()
        except DatabaseError as exc:
            raise self._open_error(exc) from exc
        if version is None or version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.display_url} has schema version {version}, newer than this sweeper "
                f"(schema {SCHEMA_VERSION}); upgrade sweeper to read it"
            )
        if version < SCHEMA_VERSION:
            upgrade(self.engine, version)
        with self.engine.begin() as conn:
            # Tables added in this version without a migration of their own.
            Base.metadata.create_all(conn)

    def _open_error(self, exc: DatabaseError) -> StoreError:
        """One line that says what is wrong with the file or server, and what to do."""
        if not self.is_sqlite:
            return StoreError(
                f"cannot open the store at {self.display_url}: {exc.orig}. "
                "Check storage.url and that the database server is running."
            )
        path = self.url.database
        reason = str(exc.orig)
        full = disk_full(exc, self.url)
        if full:
            return StoreError(f"cannot write the SQLite database: {full}; free some space "
                              "there, or choose another storage.url")
        if "not a database" in reason or "malformed" in reason:
            return StoreError(
                f"{path} is not a valid sweeper database (SQLite: {reason}); nothing was "
                "changed. Move it away or point storage.url at another file."
            )
        return StoreError(
            f"cannot write the SQLite database {path} (SQLite: {reason}); check that its "
            "folder is writable, or choose another storage.url"
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _written_by() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sweeper {version('sweeper')}"
    except PackageNotFoundError:
        return "sweeper (source)"


_STORES: dict[str, Store] = {}


def open_store(url: str, base_dir: str | Path | None = None) -> Store:
    """One Store per resolved URL per process, so multirun jobs share the engine."""
    key = str(resolve_url(url, base_dir))
    store = _STORES.get(key)
    if store is None:
        store = Store(url, base_dir)
        _STORES[key] = store
    return store


def dispose_stores() -> None:
    """Close every store this process opened (its pooled connections)."""
    for store in _STORES.values():
        store.dispose()
    _STORES.clear()
