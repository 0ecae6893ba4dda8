"""Runs whose process vanished: heartbeats, and which 'running' rows a later job reclaims,
against real SQLite files and PostgreSQL with real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from sweeper.run.liveness import STALE_AFTER_S, Heartbeat, reclaim_vanished_runs
from sweeper.run.recording import Recorder
from sweeper.store import Phase, Store
from sweeper.store import runs as store_runs
from sweeper.store.schema import utcnow
from tests.conftest import run_row

HOST = socket.gethostname()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Store]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else sqlite_url
    s = Store(url)
    yield s
    s.dispose()


def _running(store: Store, sweep_id: int, host: str, pid: int | None, silent_s: float) -> int:
    beat_at = utcnow() - timedelta(seconds=silent_s)
    return store_runs.insert_run(
        store,
        run_row(sweep_id, config_hash=f"h{time.monotonic_ns()}", status="running", host=host,
                pid=pid, started_at=beat_at, heartbeat_at=beat_at),
    )


def _status(store: Store, run_id: int) -> str:
    run = store_runs.get_run(store, run_id)
    assert run is not None
    return run.status


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_rows_whose_process_is_gone_are_reclaimed(store: Store) -> None:
    sweep_id = store_runs.ensure_sweep(store, "grid: liveness")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_here = _running(store, sweep_id, HOST, alive.pid, silent_s=5)
        mine = _running(store, sweep_id, HOST, os.getpid(), silent_s=5)
        dead_here = _running(store, sweep_id, HOST, _dead_pid(), silent_s=5)
        live_there = _running(store, sweep_id, "other-node", 4242, silent_s=5)
        silent_there = _running(store, sweep_id, "other-node", 4242, STALE_AFTER_S + 60)
        other_sweep = store_runs.ensure_sweep(store, "grid: someone else's")
        not_this_sweep = _running(store, other_sweep, HOST, _dead_pid(), silent_s=5)

        assert sorted(reclaim_vanished_runs(store, sweep_id)) == [dead_here, silent_there]
        assert reclaim_vanished_runs(store, sweep_id) == []  # idempotent
    finally:
        alive.kill()
        alive.wait()
    for run_id in (live_here, mine, live_there, not_this_sweep):
        assert _status(store, run_id) == "running"
    gone = store_runs.get_run(store, dead_here)
    silent = store_runs.get_run(store, silent_there)
    assert gone is not None and silent is not None
    assert (gone.status, gone.error_type) == ("interrupted", "RunVanished")
    assert "ended without recording" in (gone.error_message or "")
    assert "no heartbeat from pid 4242 on other-node" in (silent.error_message or "")
    assert gone.energy_total_j is None  # no phases stored: no energy claimed


def test_reclaimed_run_keeps_the_energy_of_its_finished_phases(store: Store) -> None:
    sweep_id = store_runs.ensure_sweep(store, "grid: partial")
    run_id = _running(store, sweep_id, HOST, _dead_pid(), silent_s=1)
    for kind, index, energy_j in [("train_epoch", 0, 30.0), ("eval", 0, 2.0),
                                  ("train_epoch", 1, 31.0)]:
        store_runs.add_phase(store, Phase(run_id=run_id, kind=kind, index=index, start_s=0.0,
                                          duration_s=1.5, energy_j=energy_j))
    assert reclaim_vanished_runs(store, sweep_id) == [run_id]
    run = store_runs.get_run(store, run_id)
    assert run is not None
    assert (run.energy_train_j, run.energy_eval_j, run.energy_inference_j) == (61.0, 2.0, 0.0)
    assert run.energy_total_j == 63.0 and run.train_duration_s == 3.0
    assert "lower bound" in (run.measurement_warning or "")


def test_a_row_that_beat_after_it_was_judged_is_left_alone(store: Store) -> None:
    sweep_id = store_runs.ensure_sweep(store, "grid: race")
    run_id = _running(store, sweep_id, "other-node", 7, STALE_AFTER_S + 60)
    (judged,) = store_runs.running_runs(store, sweep_id)
    store_runs.beat(store, run_id)  # the run was only slow: it beats before the update lands
    assert not store_runs.mark_vanished(store, run_id, judged.heartbeat_at, "gone?")
    assert _status(store, run_id) == "running"


def test_heartbeat_advances_while_the_run_works_and_stops_with_it(store: Store) -> None:
    sweep_id = store_runs.ensure_sweep(store, "grid: beats")
    run_id = _running(store, sweep_id, HOST, os.getpid(), silent_s=60)

    def beat_at() -> object:
        run = store_runs.get_run(store, run_id)
        assert run is not None
        return run.heartbeat_at

    before = beat_at()
    with Heartbeat(run_id, Recorder(store, run_id, keep_samples=False).beat, every_s=0.05):
        time.sleep(0.3)
        during = beat_at()
        assert during != before
    after = beat_at()
    time.sleep(0.2)
    assert beat_at() == after  # stopped with the run: no more beats
    assert _status(store, run_id) == "running"


def test_a_run_wrongly_judged_vanished_ends_with_its_own_outcome(store: Store) -> None:
    """Two machines sharing a host name could judge each other's runs gone; the run that
    goes on still records how it really ended, without the other's verdict."""
    sweep_id = store_runs.ensure_sweep(store, "grid: same name")
    run_id = _running(store, sweep_id, HOST, _dead_pid(), silent_s=1)
    assert reclaim_vanished_runs(store, sweep_id) == [run_id]
    recorder = Recorder(store, run_id, keep_samples=False)
    recorder.close({"energy_total_j": 12.0}, "completed", None, time.perf_counter())
    run = store_runs.get_run(store, run_id)
    assert run is not None
    assert (run.status, run.error_type, run.error_message) == ("completed", None, None)
    assert run.energy_total_j == 12.0
