"""The machine-wide record of the GPU power limits sweeper changed: one owner-only state
file per GPU, with the original limit and the processes holding the card.

A file rather than the store: it exists before the store is opened, needs no schema, and
is what the next start on this machine reads when a run was killed before it could restore
its card (sweeper.energy.power_limit.restore_stale). A holder is a pid with its process's
start time, so a reused pid is not taken for the holder. Every read-modify-write holds an
flock of the file's .lock; every write is atomic.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

STATE_DIR_ENV = "SWEEPER_STATE_DIR"


def state_dir() -> Path:
    """This machine's folder of power-limit state files."""
    base = os.environ.get(STATE_DIR_ENV) or Path.home() / ".cache" / "sweeper"
    return Path(base) / "gpu-power" / socket.gethostname()


def holder() -> dict[str, float]:
    """This process, as a state file lists it."""
    me = psutil.Process()
    return {"pid": me.pid, "started": me.create_time()}


def alive(record: dict[str, Any]) -> bool:
    """The holding process still runs (the same one: a reused pid starts later)."""
    try:
        proc = psutil.Process(int(record["pid"]))
        return abs(proc.create_time() - float(record["started"])) < 1.0 and (
            proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


@contextlib.contextmanager
def locked(path: Path) -> Iterator[dict[str, Any] | None]:
    """The state file's content (None if absent) under an exclusive flock of its .lock."""
    import fcntl  # POSIX: imported only where a limit is set (NVML power limits are Linux's)

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = None
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            state = json.loads(path.read_text())
        yield state
    finally:
        os.close(fd)  # releases the flock


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically, owner-only: a crash mid-write leaves the old file, never half of one."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
