"""Telling a run whose process vanished from one still going.

A process killed outright (SIGKILL, the out-of-memory killer, a lost node, a torchrun
rank 0 stopped while blocked in a collective) cannot record how it ended, so its row stays
'running'. Each run beats while it works; the next job or summary of its sweep marks a row
interrupted when its process is gone from this host, or when it has not beaten for
STALE_AFTER_S (another host). Resume then re-runs it, like any interrupted run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import psutil

from sweeper.errors import StoreUnavailable
from sweeper.run.inference_gate import skipped_inference
from sweeper.run.recording import energy_split
from sweeper.store import Store
from sweeper.store import runs as store_runs
from sweeper.store.replay import replay_spools
from sweeper.store.schema import Run, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 10 * HEARTBEAT_S  # a loaded database or a paused VM can delay a few beats


class Heartbeat:
    """Calls ``beat`` (mark run ``run_id`` alive) every ``every_s`` on a daemon thread until
    stopped."""

    def __init__(
        self, run_id: int, beat: Callable[[], None], every_s: float = HEARTBEAT_S
    ) -> None:
        self.run_id = run_id
        self.beat = beat
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-heartbeat", daemon=True)
        self._warned = False

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except StoreUnavailable:
                return  # the store is gone for good: the run's own thread reports it
            except Exception as exc:  # a busy database must not stop the run; later beats may
                if not self._warned:
                    self._warned = True
                    log.warning("run %d heartbeat failed: %s: %s", self.run_id,
                                type(exc).__name__, exc)


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite keeps no zone, and sweeper writes UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def gone_from_this_host(host: str | None, pid: int | None, this_host: str) -> bool:
    """Whether (host, pid) names another process of this host that no longer exists."""
    return (
        host == this_host and pid is not None and pid != os.getpid()
        and not psutil.pid_exists(pid)
    )


def why_vanished(
    run: Run, host: str, now: datetime, stale_after_s: float = STALE_AFTER_S
) -> str | None:
    """Why a 'running' row cannot belong to a live process, or None if it may."""
    if run.host == host and run.pid == os.getpid():
        return None
    if gone_from_this_host(run.host, run.pid, host):
        return (
            f"its process (pid {run.pid} on {host}) ended without recording the run: "
            "killed (SIGKILL, out-of-memory killer) or crashed"
        )
    last = as_utc(run.heartbeat_at or run.started_at)
    if last is None:
        return None
    silent_s = (now - last).total_seconds()
    if silent_s <= stale_after_s:
        return None
    return (
        f"no heartbeat from pid {run.pid} on {run.host} for {silent_s:.0f} s "
        f"(since {last:%Y-%m-%d %H:%M:%S} UTC; a live run beats every {HEARTBEAT_S:.0f} s): "
        "its process or node was lost"
    )


def live_twin(store: Store, sweep_id: int, config_hash: str, run_id: int,
              needs_inference: bool = True) -> Run | None:
    """An earlier run of the same config in the sweep that completed or is still alive
    (another process working through the same grid), or None. One that skipped its
    inference benchmark is no twin of a job that needs E_in."""
    host, now = socket.gethostname(), utcnow()
    for run in store_runs.earlier_twins(store, sweep_id, config_hash, run_id):
        if run.status == "completed":
            if not (needs_inference and skipped_inference(run.stop_reason)):
                return run
        elif why_vanished(run, host, now) is None:
            return run
    return None


def reclaim_vanished_runs(
    store: Store, sweep_id: int, stale_after_s: float = STALE_AFTER_S
) -> list[int]:
    """Store what processes that ended during a store outage kept in their spools, then
    mark the sweep's runs whose process is gone as interrupted; their ids."""
    gave_up = replay_spools(store)  # writes a process kept locally when the store went away
    host, now = socket.gethostname(), utcnow()
    reclaimed = []
    for run in store_runs.running_runs(store, sweep_id):
        reason = why_vanished(run, host, now, stale_after_s)
        if reason is None:
            continue
        if run.id in gave_up:  # not killed: it stopped waiting for the store
            reason = (f"{gave_up[run.id]}; the writes it queued during the outage were "
                      "stored from its local spool")
        partial = partial_energy(store_runs.phase_totals(store, run.id))
        if store_runs.mark_vanished(store, run.id, run.heartbeat_at, reason, **partial):
            log.warning("run %d was left 'running': %s; recorded as interrupted", run.id, reason)
            reclaimed.append(run.id)
    return reclaimed


def partial_energy(totals: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """A vanished run's energy columns from the phases it stored before it went: a lower
    bound (the phase it was in, and the gaps between phases, are lost), and labelled so."""
    if not totals:
        return {}
    train_s = totals.get("train_epoch", (0.0, 0.0))[1]
    return {
        **energy_split(lambda kind: totals.get(kind, (0.0, 0.0))[0]),
        "energy_total_j": sum(energy_j for energy_j, _ in totals.values()),
        "train_duration_s": train_s or None,
        "measurement_warning": "energy is the sum of the phases finished before the process "
        "vanished (a lower bound)",
    }
