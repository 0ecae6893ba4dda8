"""A store that goes away for a while: runs wait it out, in order, and give up cleanly.

PostgreSQL is the shared server other tests use, so it is never stopped: a TCP proxy on
127.0.0.1 sits between sweeper and it, and cutting the proxy (every connection closed, new
ones refused) is the outage. SQLite's outage is a lock held past the busy timeout.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from sqlalchemy.engine import make_url

from sweeper.config.keys import usage_error
from sweeper.config.spec import build_spec
from sweeper.energy import PhaseEnergy, Sample
from sweeper.errors import ConfigError, StoreUnavailable
from sweeper.run.recording import Recorder
from sweeper.store import Phase, Store
from sweeper.store import runs as store_runs
from sweeper.store.db import DEFAULT_OUTAGE_S
from sweeper.store.schema import utcnow
from tests.conftest import CONF_DIR as CONF
from tests.conftest import cli_env, run_row, sql_rows


class CuttableProxy:
    """127.0.0.1:port -> target, byte for byte, until cut(): then every open connection is
    closed and new ones are refused (nothing listens), as when a server restarts."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(server)
                    return
                self._sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)

    def url(self, url: str) -> str:
        """`url` (whose host and port are the target's) through the proxy; the query is
        kept as written (a rendered URL would unescape its `%3D`)."""
        host, port = self.target
        assert f"@{host}:{port}/" in url, url
        return url.replace(f"@{host}:{port}/", f"@127.0.0.1:{self.port}/", 1)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy(pg_url: str) -> Iterator[CuttableProxy]:
    url = make_url(pg_url)
    p = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    yield p
    p.cut()


def _cut_for(proxy: CuttableProxy, seconds: float) -> threading.Thread:
    """Cut now, restore after `seconds`, in the background."""
    proxy.cut()
    thread = threading.Timer(seconds, proxy.restore)
    thread.start()
    return thread


def _phase(kind: str, index: int, start_s: float) -> PhaseEnergy:
    return PhaseEnergy(kind, index, start_s, 1.0, 10.0 + index, {"cpu": 10.0 + index},
                       {"cpu": "estimate"})


def _samples(t0_s: float, n: int) -> list[Sample]:
    return [Sample(t0_s + 0.1 * i, "cpu", "estimate", 10.0, float(i)) for i in range(n)]


# ------------------------------------------------------------------- in-process, PostgreSQL


@pytest.mark.postgres
def test_a_job_about_to_start_waits_for_the_store(proxy: CuttableProxy, pg_url: str) -> None:
    store = Store(proxy.url(pg_url))
    store.outage_s = 30
    sweep_id = store_runs.ensure_sweep(store, "grid: waits")
    _cut_for(proxy, 1.5)
    t0 = time.monotonic()
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running", started_at=utcnow(),
                                                  pid=1, host="h"))
    assert time.monotonic() - t0 >= 1.4  # it waited, rather than failing
    assert store_runs.completed_run_id(store, sweep_id, "h") is None
    assert sql_rows(pg_url, "select id, status from runs") == [(run_id, "running")]
    store.dispose()


@pytest.mark.postgres
def test_a_run_goes_on_through_an_outage_and_its_writes_land_in_order(
    proxy: CuttableProxy, pg_url: str
) -> None:
    store = Store(proxy.url(pg_url))
    store.outage_s = 30
    sweep_id = store_runs.ensure_sweep(store, "grid: outage")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=True)
    recorder.phase(_phase("train_epoch", 0, 0.0), steps=5)
    recorder.samples(_samples(0.0, 10))
    restored = _cut_for(proxy, 2.0)
    t0 = time.monotonic()
    for epoch in range(1, 4):  # none of these waits for the store
        recorder.samples(_samples(epoch, 10))
        recorder.phase(_phase("train_epoch", epoch, float(epoch)), steps=5)
        recorder.beat()
        recorder.beat()
    assert time.monotonic() - t0 < 1.0
    assert recorder.writes.buffered >= 9
    recorder.close({"energy_train_j": 46.0}, "completed", None, time.perf_counter())
    assert time.monotonic() - t0 >= 1.9  # close() returned once the store was back
    restored.join()
    phases = sql_rows(pg_url, "select kind, index, energy_j from phases order by id")
    assert phases == [("train_epoch", i, 10.0 + i) for i in range(4)]  # in order, once each
    samples = sql_rows(pg_url, "select t_s from power_samples order by id")
    assert [round(t, 6) for t, in samples] == [round(e + 0.1 * i, 6) for e in range(4)
                                                 for i in range(10)]
    assert sql_rows(pg_url, "select count(*) from phase_domain_energy") == [(4,)]
    (status, energy, ended, beat), = sql_rows(
        pg_url, "select status, energy_train_j, ended_at, heartbeat_at from runs")
    assert (status, energy) == ("completed", 46.0) and ended is not None and beat is not None
    store.dispose()


@pytest.mark.postgres
def test_an_outage_longer_than_outage_s_gives_up_in_one_line_and_keeps_what_was_stored(
    proxy: CuttableProxy, pg_url: str
) -> None:
    store = Store(proxy.url(pg_url))
    store.outage_s = 1.0
    sweep_id = store_runs.ensure_sweep(store, "grid: gives up")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=True)
    recorder.phase(_phase("train_epoch", 0, 0.0))
    recorder.samples(_samples(0.0, 5))
    proxy.cut()
    recorder.phase(_phase("train_epoch", 1, 1.0))  # queued
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        recorder.close({}, "completed", None, time.perf_counter())
    assert 0.5 < time.monotonic() - t0 < 5
    message = str(caught.value)
    assert "\n" not in message and "storage.outage_s=1" in message
    assert f"run {run_id} stays 'running'" in message and "127.0.0.1" in message
    with pytest.raises(StoreUnavailable):  # and every later write says so at once
        recorder.phase(_phase("eval", 1, 2.0))
    proxy.restore()
    assert sql_rows(pg_url, 'select kind, "index" from phases') == [("train_epoch", 0)]
    assert sql_rows(pg_url, "select count(*) from power_samples") == [(5,)]
    assert sql_rows(pg_url, "select status from runs") == [("running",)]  # for the next command
    store.dispose()


@pytest.mark.postgres
def test_an_optuna_study_waits_out_an_outage_of_its_database(
    proxy: CuttableProxy, pg_url: str
) -> None:
    """A search asks and tells its study through the outage: both wait, then land."""
    import optuna
    from optuna.trial import TrialState

    from sweeper.search.study import optuna_storage

    storage = optuna_storage(make_url(proxy.url(pg_url)), outage_s=30)
    study = optuna.create_study(storage=storage, study_name="rides out",
                                directions=["maximize", "minimize"])
    first = study.ask()
    study.tell(first, [0.5, 10.0])
    restored = _cut_for(proxy, 2.0)
    t0 = time.monotonic()
    second = study.ask()
    study.tell(second, [0.6, 9.0])
    assert time.monotonic() - t0 > 1.5  # it waited for the database, not failed
    restored.join()
    fresh = optuna.load_study(study_name="rides out", storage=pg_url)
    assert [(t.state, t.values) for t in fresh.trials] == [
        (TrialState.COMPLETE, [0.5, 10.0]), (TrialState.COMPLETE, [0.6, 9.0])]
    storage.remove_session()
    storage.engine.dispose()


@pytest.mark.postgres
def test_an_optuna_outage_past_outage_s_ends_in_one_line(
    proxy: CuttableProxy, pg_url: str
) -> None:
    import optuna

    from sweeper.search.study import optuna_storage

    storage = optuna_storage(make_url(proxy.url(pg_url)), outage_s=1.0)
    study = optuna.create_study(storage=storage, study_name="gives up")
    proxy.cut()
    with pytest.raises(StoreUnavailable) as caught:
        study.ask()
    message = str(caught.value)
    assert "\n" not in message and "storage.outage_s=1" in message
    assert "Optuna study's database" in message and "resumes it" in message
    proxy.restore()
    storage.engine.dispose()


def test_a_retried_write_that_had_committed_is_not_stored_twice(sqlite_url: str) -> None:
    """A connection lost while the commit was on its way: the write may have landed. The
    retry asks first (here the first try did commit)."""
    store = Store(sqlite_url)
    sweep_id = store_runs.ensure_sweep(store, "grid: once")
    row = run_row(sweep_id, status="running", started_at=utcnow(), pid=7, host="h")
    run_id = store_runs.insert_run(store, row)
    assert store_runs.insert_run.once(store, True, row) == run_id
    recorder = Recorder(store, run_id, keep_samples=True)
    recorder.phase(_phase("train_epoch", 0, 0.5))
    recorder.samples(_samples(0.0, 3))
    again = Phase(run_id=run_id, kind="train_epoch", index=0, start_s=0.5, duration_s=1.0)
    store_runs.add_phase.once(store, True, again)
    rows = [{"run_id": run_id, "t_s": 0.0, "domain": "cpu", "source": "estimate",
             "power_w": 10.0, "energy_j": 0.0}]
    assert store_runs.add_samples.once(store, True, rows) == 1
    with store.session() as session:
        count = session.execute(sqlalchemy.text(
            "select (select count(*) from runs), (select count(*) from phases), "
            "(select count(*) from power_samples)")).one()
    assert tuple(count) == (1, 1, 3)
    # Without the question, the same calls do insert (what makes the question necessary).
    store_runs.add_phase.once(store, False, again)
    assert len(store_runs.run_phases(store, run_id)) == 2
    store.dispose()


# ------------------------------------------------------------------- in-process, SQLite


def test_a_sqlite_lock_held_past_the_busy_timeout_delays_the_writes(tmp_path: Path) -> None:
    db = tmp_path / "sweeper.db"
    store = Store(f"sqlite:///{db}?timeout=0.2")
    store.outage_s = 30
    sweep_id = store_runs.ensure_sweep(store, "grid: locked")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=True)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    t0 = time.monotonic()
    recorder.phase(_phase("train_epoch", 0, 0.0))  # waits the busy timeout, then queues
    recorder.samples(_samples(0.0, 4))
    assert time.monotonic() - t0 < 2.0
    assert recorder.writes.buffered == 2
    threading.Timer(1.5, lambda: holder.execute("COMMIT")).start()
    recorder.close({}, "completed", None, time.perf_counter())
    assert time.monotonic() - t0 >= 1.4
    holder.close()
    assert [p.kind for p in store_runs.run_phases(store, run_id)] == ["train_epoch"]
    run = store_runs.get_run(store, run_id)
    assert run is not None and run.status == "completed"
    store.dispose()


def test_outage_s_is_validated() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert build_spec(compose("config", ["storage.outage_s=2.5"])).storage.outage_s == 2.5
        assert build_spec(compose("config")).storage.outage_s == DEFAULT_OUTAGE_S
        for value in ("-5", "nan", "abc", "null"):  # the last two: refused by the schema's type
            with pytest.raises(ConfigError, match=r"'storage.outage_s': .*a finite number >= 0"):
                try:
                    cfg = compose("config", [f"storage.outage_s={value}"])
                except ConfigCompositionException as exc:
                    raise usage_error(exc) or exc from None
                build_spec(cfg)
    GlobalHydra.instance().clear()


# ------------------------------------------------------------------- the CLI, end to end

# Three runs of about 1.5 s each on an idle machine (8 epochs of ~0.15 s), so a run still
# trains after a cut at its first phase; 50 Hz so sample batches (one per 50 polls) are
# written during the outage.
EPOCHS = 8
GRID = [
    "-m", "model=mlp", "dataset=synthetic", "lr=1e-3,2e-3,3e-3", f"epochs={EPOCHS}",
    "num_threads=1", "inference.batches=3", "energy.sample_hz=50", "sweeper.progress=false",
]
PHASES = [
    *[(kind, epoch) for epoch in range(EPOCHS) for kind in ("train_epoch", "eval")],
    ("test", 0), ("inference", 0),
]


def _start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], Path]:
    log = cwd / "sweep.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args], cwd=cwd, env=cli_env(), text=True,
        stdout=log.open("w"), stderr=subprocess.PIPE,
    )
    return proc, log


def _when_training(
    proc: subprocess.Popen[str], query: Any, timeout_s: float = 120
) -> int:
    """The id of the first run that has stored a phase, polled every 20 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        found = query()
        if found is not None:
            return found
        time.sleep(0.02)
    raise AssertionError("no run started training")


def _pg_first_training(engine: sqlalchemy.Engine) -> Any:
    def query() -> int | None:
        try:
            with engine.connect() as conn:
                return conn.execute(sqlalchemy.text(
                    "select min(run_id) from phases join runs on runs.id = run_id "
                    "where runs.status = 'running'")).scalar()
        except sqlalchemy.exc.ProgrammingError:  # the tables do not exist yet
            return None
    return query


def _cut_until_it_ends(
    proc: subprocess.Popen[str], proxy: CuttableProxy, engine: sqlalchemy.Engine
) -> tuple[int, str]:
    """Cut the store once a run trains, for good, until the command ends; the run's id and
    the command's stderr (the store is restored afterwards)."""
    try:
        cut_run = _when_training(proc, _pg_first_training(engine))
        proxy.cut()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.restore()
    return cut_run, err


def _check_runs_complete(rows: Any, run_ids: list[int]) -> None:
    """Every phase of every run, in order, and a power series with no hole in it."""
    for run_id in run_ids:
        phases = rows(f'select kind, "index" from phases where run_id = {run_id} order by id')
        assert phases == PHASES, (run_id, phases)
        times = [t for t, in rows(f"select t_s from power_samples where run_id = {run_id} "
                                  "and domain = 'cpu' order by t_s")]
        (duration_s,), = rows(f"select sum(duration_s) from phases where run_id = {run_id}")
        # At least half the polls of 50 Hz over the run (a run of 0.4 s has ~20): a fixed
        # count was one poll short on a run that happened to be quick.
        assert len(times) >= max(5, int(0.5 * 50 * duration_s)), (len(times), duration_s)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # The sampler hands over a batch every 50 polls (1 s here): lost batches leave a
        # hole of a second or more each, while a loaded machine delays a poll by less. The
        # last batch, handed over as the run ends (inside the outage), is the end check.
        assert max(gaps) < 1.5, f"run {run_id} lost samples: a {max(gaps):.1f} s hole"
        assert times[-1] >= duration_s  # sampled to the end, the final flush included


@pytest.mark.slow
@pytest.mark.postgres
def test_a_grid_survives_the_database_going_away_mid_run(
    tmp_path: Path, proxy: CuttableProxy, pg_url: str
) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    proc, log = _start([*GRID, f"storage.url={proxy.url(pg_url)!r}", "storage.outage_s=60"],
                       tmp_path)
    try:
        cut_run = _when_training(proc, _pg_first_training(engine))
        _cut_for(proxy, 3.0)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text() + err
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    # The outage hit a run mid-way: it went on, kept its writes, and stored them later.
    assert f"run {cut_run} goes on and keeps its writes in memory" in out
    assert f"buffered write(s) of run {cut_run} stored" in out

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sqlalchemy.text(sql))]

    runs = rows("select id, lr, status, ended_at is not null from runs order by id")
    assert [(lr, status, ended) for _, lr, status, ended in runs] == [
        (1e-3, "completed", True), (2e-3, "completed", True), (3e-3, "completed", True)
    ]
    _check_runs_complete(rows, [run_id for run_id, *_ in runs])
    engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_an_outage_past_outage_s_ends_the_grid_in_one_line_and_the_next_command_recovers(
    tmp_path: Path, proxy: CuttableProxy, pg_url: str
) -> None:
    engine = sqlalchemy.create_engine(pg_url)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sqlalchemy.text(sql))]

    grid = [a if not a.startswith("lr=") else "lr=1e-3,2e-3" for a in GRID]
    url = f"storage.url={proxy.url(pg_url)!r}"
    proc, log = _start([*grid, url, "storage.outage_s=2"], tmp_path)
    cut_run, err = _cut_until_it_ends(proc, proxy, engine)
    assert proc.returncode == 2, (log.read_text() + err)[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("sweeper: error:")]
    assert len(errors) == 1, err[-3000:]
    assert f"could not record run {cut_run}: the store at " in errors[0]
    assert "storage.outage_s=2;" in errors[0] and "resumes the sweep" in errors[0]
    # What was stored before the outage is kept; the run is left for the next command.
    phases_of_cut_run = f'select id, kind, "index" from phases where run_id = {cut_run} order by id'
    kept = rows(phases_of_cut_run)
    samples = rows(f"select count(*) from power_samples where run_id = {cut_run}")
    assert kept and rows("select id, status from runs") == [(cut_run, "running")]

    again = subprocess.run(
        [sys.executable, "-m", "sweeper", *grid, url], cwd=tmp_path, env=cli_env(),
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    # The writes the run queued during the outage were spooled, and are stored now.
    assert rows(phases_of_cut_run)[:len(kept)] == kept
    assert rows(f"select count(*) from power_samples where run_id = {cut_run}") >= samples
    (status, error_type, message), = rows(
        f"select status, error_type, error_message from runs where id = {cut_run}")
    if status == "interrupted":  # it gave up before its end was queued
        assert error_type == "RunVanished"
        assert "longer than storage.outage_s=2: pid" in message, message
    else:  # its end was queued too: the spool completed it
        assert (status, error_type) == ("completed", None)
        _check_runs_complete(rows, [cut_run])
    resumed = rows(f"select id, lr, status from runs where id != {cut_run} order by id")
    lrs = [1e-3, 2e-3] if status == "interrupted" else [2e-3]
    assert [(lr, status) for _, lr, status in resumed] == [(lr, "completed") for lr in lrs]
    _check_runs_complete(rows, [run_id for run_id, *_ in resumed])
    engine.dispose()


@pytest.mark.slow
def test_a_run_completes_through_a_sqlite_lock_held_past_the_busy_timeout(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sweeper.db"
    single = [a for a in GRID if a != "-m" and not a.startswith("lr=")]
    proc, log = _start([*single, f"storage.url={f'sqlite:///{db}?timeout=0.3'!r}"], tmp_path)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()

    def first_training() -> int | None:
        try:
            return rows("select min(run_id) from phases")[0][0] if db.exists() else None
        except sqlite3.OperationalError:  # the schema is being created
            return None

    try:
        run_id = _when_training(proc, first_training)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # ten busy timeouts long
        time.sleep(3.0)
        holder.execute("COMMIT")
        holder.close()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text() + err
    assert proc.returncode == 0, out[-3000:]
    assert f"run {run_id} goes on and keeps its writes in memory" in out
    assert rows("select id, status from runs") == [(run_id, "completed")]
    _check_runs_complete(rows, [run_id])


@pytest.mark.slow
@pytest.mark.postgres
def test_an_outage_past_outage_s_ends_a_search_in_one_line_and_the_next_command_resumes(
    tmp_path: Path, proxy: CuttableProxy, pg_url: str
) -> None:
    """The search's own failure path (telling the study the trial failed) must not write to
    the unreachable study and end in a traceback: one line, exit 2, as a grid."""
    engine = sqlalchemy.create_engine(pg_url)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sqlalchemy.text(sql))]

    single = [a for a in GRID if a != "-m" and not a.startswith("lr=")]
    search = ["-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=2",
              "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0",
              "hydra.sweeper.print_front=false", "lr=1e-3,2e-3", "batch=64", "precision=fp32",
              *single,
              f"storage.url={proxy.url(pg_url)!r}"]
    proc, log = _start([*search, "storage.outage_s=2"], tmp_path)
    cut_run, err = _cut_until_it_ends(proc, proxy, engine)
    out = log.read_text() + err
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out
    errors = [line for line in err.splitlines() if line.startswith("sweeper: error:")]
    assert len(errors) == 1, err[-3000:]
    assert "storage.outage_s=2;" in errors[0]
    assert len(err.strip().splitlines()) <= 3, err  # the waiting warnings and the one line
    kept = rows(f'select id from phases where run_id = {cut_run}')
    assert kept

    again = subprocess.run(
        [sys.executable, "-m", "sweeper", *search], cwd=tmp_path, env=cli_env(),
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    # What was stored is kept; what the run queued during the outage came from its spool.
    assert rows(f'select id from phases where run_id = {cut_run}')[:len(kept)] == kept
    (status,), = rows(f"select status from runs where id = {cut_run}")
    if status == "completed":  # its end was queued (and spooled) before it gave up
        _check_runs_complete(rows, [cut_run])
    else:
        assert status == "interrupted"
    # The cut trial was failed as an orphan; the two new ones completed.
    import optuna

    (study_name,), = rows("select study_name from sweeps")
    states = [t.state.name for t in optuna.load_study(study_name=study_name,
                                                      storage=pg_url).trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"], states
    engine.dispose()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.postgres
def test_writes_queued_past_outage_s_are_spooled_and_the_next_command_stores_them(
    proxy: CuttableProxy, pg_url: str
) -> None:
    """The queue outlives its process: spooled to an owner-only file, stored by the next
    command, which records the run as given up for the outage (not as killed)."""
    from sweeper.run.liveness import reclaim_vanished_runs
    from sweeper.store.spool import store_folder

    store = Store(proxy.url(pg_url))
    store.outage_s = 1.0
    sweep_id = store_runs.ensure_sweep(store, "grid: spooled")
    run_id = store_runs.insert_run(store, run_row(
        sweep_id, status="running", host=socket.gethostname(), pid=_dead_pid(),
        started_at=utcnow()))
    recorder = Recorder(store, run_id, keep_samples=True)
    recorder.phase(_phase("train_epoch", 0, 0.0))
    proxy.cut()
    recorder.phase(_phase("train_epoch", 1, 1.0))  # queued, and spooled
    recorder.samples(_samples(1.0, 5))
    recorder.phase(_phase("eval", 1, 2.0))
    with pytest.raises(StoreUnavailable):
        recorder.writes.flush()
    spools = list(store_folder(store.display_url).glob(f"run-{run_id}-*.jsonl"))
    assert len(spools) == 1 and spools[0].stat().st_mode & 0o777 == 0o600
    assert spools[0].parent.stat().st_mode & 0o777 == 0o700
    proxy.restore()
    assert sql_rows(pg_url, 'select kind, "index" from phases') == [("train_epoch", 0)]
    store.dispose()

    again = Store(proxy.url(pg_url))  # the next command
    assert reclaim_vanished_runs(again, sweep_id) == [run_id]
    assert sql_rows(pg_url, 'select kind, "index", energy_j from phases order by id') == [
        ("train_epoch", 0, 10.0), ("train_epoch", 1, 11.0), ("eval", 1, 11.0)]
    assert sql_rows(pg_url, "select count(*) from power_samples") == [(5,)]
    (status, message), = sql_rows(pg_url, "select status, error_message from runs")
    assert status == "interrupted"
    assert "was unreachable for" in message and "longer than storage.outage_s=1" in message
    assert "stored from its local spool" in message and "killed" not in message
    assert not spools[0].exists()
    reclaim_vanished_runs(again, sweep_id)  # replayed once: nothing stored twice
    assert sql_rows(pg_url, "select count(*) from phases") == [(3,)]
    again.dispose()


@pytest.mark.postgres
def test_a_spool_of_a_live_process_is_left_alone(proxy: CuttableProxy, pg_url: str) -> None:
    from sweeper.store.replay import replay_spools
    from sweeper.store.spool import store_folder

    store = Store(proxy.url(pg_url))
    store.outage_s = 30
    sweep_id = store_runs.ensure_sweep(store, "grid: live")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=True)
    restored = _cut_for(proxy, 1.5)
    recorder.phase(_phase("train_epoch", 0, 0.0))  # queued: the spool is locked by its writer
    assert replay_spools(store) == {}
    assert list(store_folder(store.display_url).glob(f"run-{run_id}-*.jsonl"))
    restored.join()
    recorder.close({}, "completed", None, time.perf_counter())
    assert not list(store_folder(store.display_url).glob(f"run-{run_id}-*.jsonl"))
    assert sql_rows(pg_url, "select count(*) from phases") == [(1,)]
    store.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_run_killed_during_an_outage_loses_none_of_its_queued_writes(
    tmp_path: Path, proxy: CuttableProxy, pg_url: str
) -> None:
    """SIGKILL while the store is away: what the run queued meanwhile was spooled, and the
    next command stores it before it judges the run."""
    import os
    import signal

    engine = sqlalchemy.create_engine(pg_url)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sqlalchemy.text(sql))]

    single = [a for a in GRID if a != "-m" and not a.startswith("lr=")]
    args = ["-m", *single, "lr=1e-3", f"storage.url={proxy.url(pg_url)!r}",
            "storage.outage_s=60"]
    proc, log = _start(args, tmp_path)
    try:
        cut_run = _when_training(proc, _pg_first_training(engine))
        proxy.cut()
        before = rows(f"select count(*) from phases where run_id = {cut_run}")[0][0]
        deadline = time.monotonic() + 60
        while "keeps its writes in memory" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(1.0)  # more epochs end and queue
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.restore()
    again = subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=tmp_path, env=cli_env(),
        capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stored " in again.stderr + again.stdout
    after = rows(f"select count(*) from phases where run_id = {cut_run}")[0][0]
    assert after > before, (before, after)  # the spooled phases landed
    (status,), = rows(f"select status from runs where id = {cut_run}")
    if status == "completed":  # its end was queued (and spooled) before the kill
        _check_runs_complete(rows, [cut_run])
    else:
        assert status == "interrupted"
    engine.dispose()
