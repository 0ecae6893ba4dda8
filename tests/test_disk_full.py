"""A full disk under the SQLite store: one line that says so (path, free space), nothing
already stored lost, and the same command resumes once space is freed.

The disk is a real one: a small tmpfs mounted for the test (root, as CI runs). Where
mounting is not permitted the tests skip, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.energy import PhaseEnergy
from sweeper.errors import DiskFull, StoreError
from sweeper.run.recording import Recorder
from sweeper.store import Store
from sweeper.store import runs as store_runs
from tests.conftest import cli_env, run_row, sql_rows


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount = shutil.which("mount")
    point = tmp_path / "disk"
    point.mkdir()
    if mount is None:
        pytest.skip("no mount command here")
    proc = subprocess.run([mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; the filler file, to delete to free it again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def _phase(index: int) -> PhaseEnergy:
    return PhaseEnergy("train_epoch", index, float(index), 1.0, 10.0, {"cpu": 10.0},
                       {"cpu": "estimate"})


def test_a_full_disk_mid_run_stops_its_writes_in_one_line_and_keeps_what_was_stored(
    small_disk: Path,
) -> None:
    db = small_disk / "sweeper.db"
    store = Store(f"sqlite:///{db}")
    sweep_id = store_runs.ensure_sweep(store, "grid: full")
    run_id = store_runs.insert_run(store, run_row(sweep_id, status="running"))
    recorder = Recorder(store, run_id, keep_samples=True)
    recorder.phase(_phase(0))
    filler = fill(small_disk)
    with pytest.raises(DiskFull) as caught:
        for index in range(1, 200):  # a few writes may still fit in pages SQLite holds
            recorder.phase(_phase(index))
    message = str(caught.value)
    assert "\n" not in message
    assert f"could not record run {run_id}: the disk holding {db} is full (" in message
    assert " free in " in message and "free some space there" in message
    with pytest.raises(DiskFull):  # every later write says so at once
        recorder.beat()
    store.dispose()
    filler.unlink()
    stored = sql_rows(f"sqlite:///{db}", "select count(*) from phases")[0][0]
    assert stored >= 1  # nothing already stored is lost
    assert sql_rows(f"sqlite:///{db}", "select status from runs") in ([("running",)],
                                                                      [("failed",)])


def test_a_full_disk_at_start_says_the_disk_is_full(small_disk: Path) -> None:
    fill(small_disk)
    with pytest.raises(StoreError) as caught:
        Store(f"sqlite:///{small_disk / 'sweeper.db'}")
    message = str(caught.value)
    assert f"the disk holding {small_disk / 'sweeper.db'} is full (" in message, message
    assert "check that its folder is writable" not in message


@pytest.mark.slow
def test_a_sweep_whose_disk_fills_ends_in_one_line_and_the_same_command_resumes(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "sweeper.db"
    args = ["-m", "model=mlp", "dataset=synthetic", "epochs=8", "num_threads=1",
            "inference.batches=3", "energy.sample_hz=50", "sweeper.progress=false",
            "lr=1e-3,2e-3", f"storage.url=sqlite:///{db}"]
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=tmp_path,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            with contextlib.suppress(Exception):
                if sql_rows(f"sqlite:///{db}", "select count(*) from phases")[0][0]:
                    break
            time.sleep(0.05)
        filler = fill(small_disk)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, (out + err)[-3000:]
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("sweeper: error:")]
    assert len(errors) == 1, err[-3000:]
    assert f"the disk holding {db} is full (" in errors[0]
    filler.unlink()
    kept = sql_rows(f"sqlite:///{db}", "select id, run_id from phases order by id")
    assert kept
    again = subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=tmp_path,
                           env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sql_rows(f"sqlite:///{db}", "select id, run_id from phases order by id")[
        :len(kept)] == kept
    runs = sql_rows(f"sqlite:///{db}", "select lr, status, error_type from runs order by id")
    first = runs[0]
    assert first[1:] in (("failed", "DiskFull"), ("interrupted", "RunVanished")), runs
    assert sorted(lr for lr, status, _ in runs if status == "completed") == [1e-3, 2e-3]
