"""Replaying the spools (sweeper.store.spool) that processes left behind when they crashed,
were killed or gave up during an outage of this store: their queued writes are stored in
order, each checked first so nothing is stored twice, then the file is deleted."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from typing import Any

from sweeper.store import runs as store_runs
from sweeper.store.db import Store
from sweeper.store.outage import Retried, is_transient
from sweeper.store.spool import decode, store_folder

log = logging.getLogger(__name__)

OPS: dict[str, Retried[..., Any]] = {
    op.__name__: op
    for op in (store_runs.add_samples, store_runs.add_phase, store_runs.update_run)
}


def _records(fd: int) -> list[dict[str, Any]]:
    with os.fdopen(os.dup(fd), "r", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written when the process died
            break
    return records


def replay_spools(store: Store) -> dict[int, str]:
    """Store what the spools of this store hold; {run id: why its process gave it up}."""
    gave_up: dict[int, str] = {}
    try:
        folder = store_folder(store.display_url)
    except RuntimeError:  # no home folder to find the spools in
        return gave_up
    if not folder.is_dir():
        return gave_up
    for path in sorted(folder.glob("run-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # replayed by another process meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive and still writing it
            if not path.exists():
                continue
            stored = 0
            for record in _records(fd):
                if "gave_up" in record:
                    gave_up[int(record["run_id"])] = str(record["gave_up"])
                    continue
                op = OPS.get(record.get("op", ""))
                if op is None:
                    continue
                try:
                    op.once(store, True, *decode(record["args"]), **decode(record["kwargs"]))
                    stored += 1
                except Exception as exc:
                    if is_transient(exc, store):
                        log.warning("the store went away again while %s was replayed; it is "
                                    "kept for the next command", path)
                        return gave_up
                    log.error("a spooled write in %s could not be stored: %s", path, exc)
            path.unlink()
            log.warning("stored %d write(s) kept in %s by a process that ended during a store "
                        "outage", stored, path)
        finally:
            os.close(fd)
    return gave_up
