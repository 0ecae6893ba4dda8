"""GPU power limits through the real CLI, with the fake NVML as ``pynvml`` in the sweeper
subprocess (tests/fake_pynvml, the card's state in a file that outlives the process): a
grid over three limits, a refusal without permission, SIGINT, SIGTERM and kill -9.
The runs train on the CPU and cap the fake GPU that ``energy.gpus=[0]`` names."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LONG_RUN, ROOT, TINY, cli_env, wait_for_training
from tests.fake_nvml import H200_LIMIT_MW, FakeGpu, FileBackedNvml

pytestmark = pytest.mark.slow  # real CLI runs: ~10 s each on the shared 2-core machine

ORIGINAL_MW = 650_000
CAP = ["device=cpu", "energy.gpus=[0]", "model=mlp"]


def _card(tmp_path: Path, **kw: object) -> dict[str, str]:
    """One fake H200 in a file, and the environment that makes it the subprocess's NVML."""
    card = tmp_path / "card.json"
    FileBackedNvml.write(card, [FakeGpu(
        "NVIDIA H200", enforced_limit_mw=ORIGINAL_MW, management_limit_mw=ORIGINAL_MW,
        max_limit_mw=H200_LIMIT_MW, uuid="GPU-h200-cli", **kw)])  # type: ignore[arg-type]
    return cli_env(PYTHONPATH=f"{ROOT / 'tests' / 'fake_pynvml'}:{ROOT}",
                   SWEEPER_FAKE_NVML=str(card), SWEEPER_STATE_DIR=str(tmp_path / "state"))


def _limit(env: dict[str, str]) -> tuple[int, list[int]]:
    (gpu,) = FileBackedNvml.read(Path(env["SWEEPER_FAKE_NVML"]))
    return gpu["management_limit_mw"], gpu["limit_sets"]


def _sweeper(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_grid_over_three_limits_stores_them_and_restores_after_each(tmp_path: Path) -> None:
    env = _card(tmp_path)
    done = _sweeper(["-m", *CAP, "gpu.power_limit=0.6,0.8,1.0", *TINY], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(tmp_path / "results" / "sweeper.db",
                 "select status, json_extract(hardware, '$.gpu_power'), hardware_id "
                 "from runs order by id")
    assert [r[0] for r in rows] == ["completed"] * 3
    gpus = [json.loads(r[1])["gpus"]["gpu:0"] for r in rows]
    assert [(g["requested_w"], g["applied_w"], g["original_w"]) for g in gpus] == [
        (420.0, 420.0, 650.0), (560.0, 560.0, 650.0), (700.0, 700.0, 650.0)]
    assert all((g["min_w"], g["max_w"], g["default_w"]) == (200.0, 700.0, 700.0) for g in gpus)
    assert len({r[2] for r in rows}) == 1  # one card: the limit is a config dimension
    limit, sets = _limit(env)
    assert limit == ORIGINAL_MW
    capped = [s for s in sets if s != ORIGINAL_MW]
    assert capped == [420_000, 560_000, 700_000]
    for value in capped:  # each cap is followed by the original
        assert sets[sets.index(value) + 1] == ORIGINAL_MW


@pytest.mark.parametrize("multirun", [False, True], ids=["single", "grid"])
def test_without_permission_one_line_exit_2_nothing_stored(
    tmp_path: Path, multirun: bool
) -> None:
    env = _card(tmp_path, can_set_limit=False)
    done = _sweeper([*(["-m"] if multirun else []), *CAP, "gpu.power_limit=0.8", *TINY],
                    tmp_path, env)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "GPU 0 (NVIDIA H200)" in errors[0] and "200-700 W" in errors[0]
    assert "NVML_ERROR_NO_PERMISSION" in errors[0]
    db = tmp_path / "results" / "sweeper.db"
    assert not db.exists() or _rows(db, "select count(*) from runs") == [(0,)]
    assert _limit(env) == (ORIGINAL_MW, [])


def test_out_of_range_is_refused_before_any_run(tmp_path: Path) -> None:
    env = _card(tmp_path)
    done = _sweeper(["-m", *CAP, "gpu.power_limit_w=300,100", *TINY], tmp_path, env)
    assert done.returncode == 2
    assert "'gpu.power_limit_w': 100 is 100 W on GPU 0 (NVIDIA H200); allowed: 200-700 W" \
        in done.stderr
    assert not (tmp_path / "results" / "sweeper.db").exists() or _rows(
        tmp_path / "results" / "sweeper.db", "select count(*) from runs") == [(0,)]
    assert _limit(env)[0] == ORIGINAL_MW


def _start_capped(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    from tests.test_faults import _sigint_as_a_terminal_sends_it

    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", *CAP, "gpu.power_limit=0.6", *LONG_RUN],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_as_a_terminal_sends_it,
    )
    wait_for_training(tmp_path / "results" / "sweeper.db", proc)
    assert _limit(env)[0] == 420_000
    return proc


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["sigint", "sigterm"])
def test_an_interrupted_run_restores_the_original(
    tmp_path: Path, sig: signal.Signals, exit_code: int
) -> None:
    env = _card(tmp_path)
    proc = _start_capped(tmp_path, env)
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == exit_code, err[-3000:]
    assert _limit(env)[0] == ORIGINAL_MW
    assert _rows(tmp_path / "results" / "sweeper.db", "select status from runs") == [
        ("interrupted",)]
    assert not list((tmp_path / "state").rglob("*.json"))


def test_after_kill_9_the_next_start_restores_the_original(tmp_path: Path) -> None:
    env = _card(tmp_path)
    proc = _start_capped(tmp_path, env)
    proc.kill()
    proc.communicate(timeout=10)
    time.sleep(0.2)
    assert _limit(env)[0] == 420_000  # nothing could run in the killed process
    (state,) = (tmp_path / "state").rglob("*.json")
    assert json.loads(state.read_text())["original_mw"] == ORIGINAL_MW
    # The next start on this machine, even one that sets no limit, puts it back first.
    done = _sweeper(["model=mlp", "device=cpu", *TINY], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "power limit restored to 650 W" in done.stdout + done.stderr
    assert _limit(env)[0] == ORIGINAL_MW and not state.exists()


def test_auto_records_its_profile_and_restores_the_original(tmp_path: Path) -> None:
    env = _card(tmp_path)
    # An epoch of ~1000 short steps: enough for two or more 0.2 s windows (the estimate
    # meter's 20 ticks) even on a loaded machine.
    tiny = [a for a in TINY if not a.startswith("dataset.")]
    done = _sweeper([*CAP, "gpu.power_limit=auto", "dataset=synthetic", "batch=16",
                     "dataset.n_samples=20000", *tiny], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    ((record,),) = _rows(tmp_path / "results" / "sweeper.db",
                         "select json_extract(hardware, '$.gpu_power') from runs")
    power = json.loads(record)
    assert power["requested"] == "gpu.power_limit=auto" and power["max_slowdown"] == 0.1
    windows = power["auto"]["windows"]
    assert len(windows) >= 2 and windows[0]["limit_w"] == 700.0
    assert all(w["steps"] > 0 and w["energy_j"] > 0 for w in windows)
    assert power["gpus"]["gpu:0"]["applied_w"] == power["auto"]["chosen_w"]
    limit, sets = _limit(env)
    assert limit == ORIGINAL_MW and 630_000 in sets
