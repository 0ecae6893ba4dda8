"""Shared fixtures: temp SQLite stores, the PostgreSQL store, and the CLI in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from sweeper.store import Run

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
PG_URL = os.environ.get(
    "SWEEPER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("SWEEPER_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session", autouse=True)
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Writes spooled during a store outage (sweeper.store.spool) go under the test's
    temporary folders, for in-process stores and the CLI's subprocesses alike."""
    folder = tmp_path_factory.mktemp("spool")
    os.environ["SWEEPER_SPOOL_DIR"] = str(folder)
    return folder


# Small, fast settings for real runs through the CLI.
TINY = [
    "epochs=1",
    "inference.batches=3",
    "energy.sample_hz=20",
    "sweeper.progress=false",
    "dataset.max_samples=400",
    "energy.idle.seconds=0.5",  # where RAPL or NVML is readable, a short idle baseline
]


def _clone_results() -> set[tuple[Path, int]]:
    """What the clone's results/ folder holds, three levels deep (results/outputs/DATE/TIME),
    with each entry's modification time (a database written to), except its tracked files."""
    folder = ROOT / "results"
    tracked = {folder / "README.md", folder / ".gitignore"}
    entries = [*folder.glob("*"), *folder.glob("*/*"), *folder.glob("*/*/*")]
    return {(p, p.stat().st_mtime_ns) for p in entries if p not in tracked and p.exists()}


@pytest.fixture(autouse=True)
def _writes_only_under_temporary_folders() -> Iterator[None]:
    """A test writes only under its temporary folders, never the clone's results/ (issue 21,
    item 11): a test that does fails, naming what it left."""
    before = _clone_results()
    yield
    left = sorted(_clone_results() - before)
    assert not left, f"the test wrote into the clone: {[str(p) for p, _ in left[:5]]}"


@pytest.fixture
def tiny_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data root holding a 70-image CIFAR-10 in torchvision's format (tests/cifar_files.py)."""
    from cifar_files import accept_unofficial_cifar10, write_tiny_cifar10

    write_tiny_cifar10(tmp_path)
    accept_unofficial_cifar10(monkeypatch)
    return tmp_path


@pytest.fixture
def hydra_conf() -> Iterator[None]:
    """The project's config tree, for `compose` (Hydra's global state cleared around it)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweeper.db'}"


def _pg_reachable() -> str | None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL pointing at a fresh schema, dropped afterwards."""
    import sqlalchemy

    reason = _pg_reachable()
    if reason is not None:
        message = f"PostgreSQL not reachable at {PG_URL} ({reason})"
        if REQUIRE_PG:
            pytest.fail(message + "; SWEEPER_REQUIRE_POSTGRES=1 makes this test required")
        pytest.skip(message)
    schema = f"sweeper_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `python -m sweeper` subprocess: this checkout on the path, short
    Hydra errors, and no sweep name left over from a sweep run in this process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    env.pop("SWEEPER_SWEEP_NAME", None)
    return {**env, **extra}


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m sweeper ARGS` the way a user would, from cwd."""
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd, env=cli_env(**(env or {})), capture_output=True, text=True, timeout=timeout,
    )


def deny_read(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a powercap counter unreadable, as energy_uj is to non-root users since 2020.

    chmod is enough for an ordinary user; root reads anything, so as root the RAPL
    reader's file access is patched to refuse that one path.
    """
    from sweeper.energy import rapl

    path.chmod(0o000)
    if os.geteuid() == 0:
        real = rapl._read_int

        def read_int(p: Path) -> int:
            if Path(p) == path:
                raise PermissionError(13, "Permission denied", str(p))
            return real(p)

        monkeypatch.setattr(rapl, "_read_int", read_int)


# Long enough that it is always mid-training when the signal comes (~a minute of epochs).
LONG_RUN = [
    "model=mlp", "dataset=synthetic", "dataset.n_samples=4000", "epochs=300",
    "energy.sample_hz=50", "sweeper.progress=false", "inference.batches=3",
]


def wait_for_training(db: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Block until the run row is 'running' and an epoch has been recorded; return the
    number of samples stored by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    status = conn.execute("select status from runs").fetchall()
                    phases = conn.execute("select count(*) from phases").fetchone()[0]
                    samples = conn.execute("select count(*) from power_samples").fetchone()[0]
                if status == [("running",)] and phases >= 1:
                    return samples
            except sqlite3.Error:
                pass  # the schema is being created
        time.sleep(0.1)
    raise AssertionError("the run never started training")


def kill_mid_training(args: list[str], cwd: Path) -> int:
    """Start `python -m sweeper ARGS`, SIGKILL it once it is training, return its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_training(cwd / "results" / "sweeper.db", proc)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    return proc.pid


def cpu_hardware_id() -> str:
    """This machine's hardware id for CPU runs, as a run stores it (for seeding fits that
    `mode=estimate` must find on this hardware)."""
    import torch

    from sweeper.energy.hardware import describe_host
    from sweeper.training.device import describe_accelerator

    return describe_host(describe_accelerator(torch.device("cpu"))).hardware_id


def run_row(sweep_id: int, **columns: Any) -> Run:
    """A run row with the required columns filled with small valid values."""
    required: dict[str, Any] = {
        "config": {}, "config_hash": "h", "model": "mlp", "dataset": "digits", "batch": 32,
        "lr": 1e-3, "optimizer": "adam", "epochs": 1, "precision": "fp32", "device": "cpu",
    }
    return Run(sweep_id=sweep_id, **{**required, **columns})


def sql_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one SQL query against a store URL, read with a fresh engine."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sqlalchemy.text(sql))]
    finally:
        engine.dispose()
