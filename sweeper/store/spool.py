"""Writes queued during a store outage, kept on local disk as well as in memory.

WriteBehind (sweeper.store.outage) queues a running run's writes while the store is
unreachable; each queued write is also appended here, one JSON line, to a file only its
owner can read (0600, in a 0700 folder): a process that crashes, is killed or gives up
during the outage loses none of them. The file is locked while its process lives, deleted
once the queue is written, and otherwise replayed by the next command that opens the same
store on this machine (sweeper.store.replay).

Where: $SWEEPER_SPOOL_DIR, else $XDG_STATE_HOME/sweeper/spool (~/.local/state/...), one
folder per store (a hash of its URL, password masked).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect as sa_inspect

from sweeper.store.schema import Base, Phase, PhaseDomainEnergy

log = logging.getLogger(__name__)

SPOOL_DIR_ENV = "SWEEPER_SPOOL_DIR"
ROWS: dict[str, type[Base]] = {"Phase": Phase, "PhaseDomainEnergy": PhaseDomainEnergy}


def spool_root() -> Path:
    chosen = os.environ.get(SPOOL_DIR_ENV)
    if chosen:
        return Path(chosen)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "sweeper" / "spool"


def store_folder(display_url: str) -> Path:
    """The spool folder of one store (its URL without password, hashed)."""
    return spool_root() / hashlib.sha256(display_url.encode()).hexdigest()[:16]


def encode(value: Any) -> Any:
    """A write's arguments as JSON: datetimes and ORM rows (Phase and its domains) tagged."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Base):
        columns = {attr.key: encode(getattr(value, attr.key))
                   for attr in sa_inspect(type(value)).column_attrs if attr.key != "id"}
        return {"$row": type(value).__name__, "columns": columns}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$datetime" in value:
            return datetime.fromisoformat(value["$datetime"])
        if "$row" in value:
            return ROWS[value["$row"]](**decode(value["columns"]))
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class Spool:
    """The spool file of one run in this process, opened at its first queued write."""

    def __init__(self, display_url: str, run_id: int) -> None:
        self.run_id = run_id
        self.display_url = display_url
        self.path: Path | None = None  # chosen at the first queued write
        self._fd: int | None = None
        self._broken = False  # could not write (a full or read-only disk): memory only

    def append(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._write({"run_id": self.run_id, "op": op, "args": encode(args),
                     "kwargs": encode(kwargs)})

    def gave_up(self, reason: str) -> None:
        """The process stops waiting: the file stays for the next command, with why."""
        self._write({"run_id": self.run_id, "gave_up": reason})
        self.close()

    def discard(self) -> None:
        """Every queued write is stored: the file is no longer needed."""
        if self._fd is not None and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._broken:
            return
        try:
            if self._fd is None:
                name = f"run-{self.run_id}-{os.getpid()}.jsonl"
                self.path = store_folder(self.display_url) / name
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
            os.write(self._fd, (json.dumps(record) + "\n").encode())
        except Exception as exc:  # a full or read-only disk, a value JSON cannot hold
            self._broken = True
            log.warning("run %d: cannot spool its queued writes to %s (%s); they stay in "
                        "memory only", self.run_id, self.path, exc)
