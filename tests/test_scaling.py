"""Beyond one process: submitit jobs, several workers on one search, torchrun DDP, and
database passwords that never reach what is stored or printed.

Real runs go through subprocesses with the tiny settings of conftest.TINY.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from tests.conftest import ROOT, TINY, cli_env, run_cli, sql_rows
from tests.fake_nvml import FakeGpu, FakeNvml

SECRET = "hunter2-Sw33p"  # a password that must appear nowhere


def _env(**extra: str) -> dict[str, str]:
    env = cli_env(**extra)
    for key in ("SWEEPER_SWEEP_KIND", "SWEEPER_SWEEP_COMMAND"):
        env.pop(key, None)
    return env


def _compose(*overrides: str, hydra: bool = False) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


# --------------------------------------------------------------------------- submitit


@pytest.mark.slow
def test_submitit_local_sweep_records_both_runs(tmp_path: Path, sqlite_url: str) -> None:
    proc = run_cli(
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
         "model=mlp", "batch=32,64", *TINY, f"storage.url={sqlite_url}"],
        cwd=tmp_path, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sql_rows(sqlite_url, "select batch, status, host, hardware_id, sweep_id from runs")
    assert sorted((b, s) for b, s, *_ in runs) == [(32, "completed"), (64, "completed")]
    assert all(host and hw for _, _, host, hw, _ in runs)  # each job described its node
    # One sweep, named by the launching callback, not the per-job fallback.
    (name,) = sql_rows(sqlite_url, "select name from sweeps")[0]
    assert len({r[-1] for r in runs}) == 1 and name.startswith("grid: ")
    # The jobs really ran as submitit jobs (one result per job).
    assert len(list(tmp_path.glob("results/multirun/*/*/.submitit/*/*_result.pkl"))) == 2


@pytest.mark.slow
def test_a_grid_estimate_is_one_table_whichever_launcher_ran_its_jobs(tmp_path: Path) -> None:
    """submitit runs each job in its own process: the grid's table of estimates still comes
    out at the end, from what each job left in its folder, and nothing is stored."""
    from tests.test_forecast import seed_fits

    db = tmp_path / "e.db"
    seed_fits(db)
    proc = run_cli(
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
         "mode=estimate", "model=vit,cnn", "batch=32", "device=cpu",
         f"storage.url=sqlite:///{db}"],
        cwd=tmp_path, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "estimate of a 2-configuration grid" in proc.stdout, proc.stdout[-3000:]
    assert "vit/digits b32" in proc.stdout and "cnn/digits b32" in proc.stdout
    assert sql_rows(f"sqlite:///{db}", "select count(*) from runs") == [(8,)]


def test_sweep_identity_reaches_jobs_through_the_pickled_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Slurm job may not inherit the launcher's environment; the callback that submitit
    pickles into it restores the sweep's name before the job starts."""
    import pickle

    from omegaconf import OmegaConf

    from sweeper.app.callbacks import SweepCallback
    from sweeper.config.sweep import SWEEP_NAME_ENV

    callback = SweepCallback()
    callback.job_env = {SWEEP_NAME_ENV: "grid: model=mlp,cnn"}
    shipped = pickle.loads(pickle.dumps(callback))
    monkeypatch.delenv(SWEEP_NAME_ENV, raising=False)
    config = OmegaConf.create({"hydra": {
        "output_subdir": ".hydra", "runtime": {"output_dir": str(tmp_path)},
        "sweep": {"dir": str(tmp_path)},
    }})
    factory = logging.getLogRecordFactory()  # on_job_start installs log redaction
    try:
        shipped.on_job_start(config, task_function=lambda cfg: None)
    finally:
        logging.setLogRecordFactory(factory)
    assert os.environ[SWEEP_NAME_ENV] == "grid: model=mlp,cnn"


@pytest.mark.parametrize(
    ("launcher", "target", "expected"),
    [
        ("slurm", "SlurmLauncher",
         {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 60, "mem_gb": 32}),
        ("local", "LocalLauncher", {"gpus_per_node": 1, "timeout_min": 60}),
        ("submitit_slurm", "SlurmLauncher", {"partition": "gpu"}),
    ],
)
def test_launcher_configs_extend_hydra_submitit(
    launcher: str, target: str, expected: dict[str, Any]
) -> None:
    overrides = [f"hydra/launcher={launcher}"]
    if "slurm" in launcher:
        overrides.append("hydra.launcher.partition=gpu")
    node = _compose(*overrides, hydra=True).hydra.launcher
    assert node._target_.endswith(target)
    assert {k: node[k] for k in expected} == expected


# ------------------------------------------------------------------- one search, N workers


def _two_workers(tmp_path: Path, url: str) -> None:
    """Two `python -m sweeper -m hydra/sweeper=pareto` processes on one study, started
    together, as on two machines (separate working directories, one database)."""
    args = [
        "-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler=random",
        "model=mlp", "batch=64", "precision=fp32", "epochs=1", "hydra.sweeper.print_front=false",
        *[a for a in TINY if not a.startswith("epochs=")], f"storage.url={url!r}",
    ]
    procs = []
    for n in range(2):
        cwd = tmp_path / f"worker{n}"
        cwd.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sweeper", *args], cwd=cwd, env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    runs = sql_rows(url, "select trial_number, status, sweep_id from runs")
    assert len(runs) == 4 and {s for _, s, _ in runs} == {"completed"}
    assert sorted(t for t, _, _ in runs) == [0, 1, 2, 3], "trial numbers collided"
    assert len({sweep for *_, sweep in runs}) == 1, "both workers record into one sweep"
    studies = sql_rows(url, "select count(*) from studies")
    trials = sql_rows(url, "select number, state from trials order by number")
    assert studies == [(1,)]
    assert trials == [(n, "COMPLETE") for n in range(4)]


@pytest.mark.slow
def test_two_workers_one_search_sqlite(tmp_path: Path) -> None:
    _two_workers(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_one_search_postgres(tmp_path: Path, pg_url: str) -> None:
    _two_workers(tmp_path, pg_url)


# ------------------------------------------------------------------------------ passwords


def test_masking_covers_urls_keywords_and_configs() -> None:
    from sweeper.redact import mask_config, mask_secrets
    from sweeper.store import mask_url

    url = f"postgresql+psycopg://alice:{SECRET}@db:5432/sweeps?password={SECRET}&sslmode=require"
    assert SECRET not in mask_secrets(f"storage.url={url} model=mlp")
    assert SECRET not in mask_url(url)
    assert mask_secrets("sqlite:///results/sweeper.db") == "sqlite:///results/sweeper.db"
    masked = mask_config({"storage": {"url": url}, "grid": [url], "batch": 32})
    assert SECRET not in json.dumps(masked) and masked["batch"] == 32


def test_spec_config_masks_the_password_but_connects_with_it() -> None:
    from sweeper.config.spec import build_spec

    url = f"postgresql+psycopg://alice:{SECRET}@db/sweeps"
    spec = build_spec(_compose(f"storage.url={url}"))
    assert spec.storage.url == url  # what the store connects with
    assert SECRET not in json.dumps(spec.config)  # what Run.config stores


@pytest.mark.slow
@pytest.mark.postgres
def test_a_password_on_the_command_line_is_stored_and_printed_nowhere(
    tmp_path: Path, pg_url: str
) -> None:
    """The test server trusts local connections, so any password is accepted."""
    url = pg_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    assert SECRET in url
    proc = run_cli(["-m", "model=mlp", *TINY, f"storage.url={url!r}"], cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "password was typed on the command line" in proc.stdout + proc.stderr
    stored = sql_rows(pg_url, "select config, overrides, hardware from runs")
    stored += sql_rows(pg_url, "select name, command, sweep_dir from sweeps")
    assert len(stored) == 2
    for row in stored:
        text = json.dumps(row, default=str)
        assert SECRET not in text
    # Taken out of the command before Hydra read it (issue 21): not even masked, gone.
    assert "postgres@127.0.0.1" in sql_rows(pg_url, "select command from sweeps")[0][0]
    assert SECRET not in proc.stdout + proc.stderr
    saved = [p for p in (tmp_path / "results").rglob("*") if p.is_file() and p.suffix != ".pkl"]
    names = {p.name for p in saved}
    assert {"config.yaml", "hydra.yaml", "overrides.yaml", "multirun.yaml"} <= names
    for path in saved:
        assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.postgres
def test_password_from_the_environment_connects_and_stays_hidden(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.store.db import Store

    monkeypatch.setenv("SWEEPER_DB_PASSWORD", SECRET)
    store = Store(pg_url)  # the test server trusts local connections: any password works
    try:
        assert store.url.password == SECRET
        store.ping()
        assert SECRET not in store.display_url and "***" in store.display_url
    finally:
        store.dispose()


# ------------------------------------------------------------------------ hardware identity


def test_nvml_driver_and_power_limits_land_in_the_hardware_record() -> None:
    from sweeper import energy
    from sweeper.energy.hardware import describe_host

    def hardware(limit_mw: float) -> dict[str, Any]:
        nvml = FakeNvml([
            FakeGpu("NVIDIA A100-SXM4-40GB", power_mw=60_000, counter_mj=1_000.0,
                    enforced_limit_mw=limit_mw)
            for _ in range(2)
        ])
        with energy.open_meters("nvml", gpu_indices=[0, 1], nvml=nvml) as meters:
            return describe_host({"gpu_model": "NVIDIA A100-SXM4-40GB", "gpu_count": 2},
                                 meters.describe()).as_dict()

    hw = hardware(400_000)
    assert hw["gpu_driver"] == "550.54.15"
    assert hw["gpus"] == {
        "gpu:0": {"name": "NVIDIA A100-SXM4-40GB", "power_limit_w": 400.0},
        "gpu:1": {"name": "NVIDIA A100-SXM4-40GB", "power_limit_w": 400.0},
    }
    # A power cap changes the joules, so it changes the identity runs are grouped by.
    assert hardware(250_000)["hardware_id"] != hw["hardware_id"]
    # Without NVML the identity is what it was before (CPU-only runs keep their ids).
    plain = describe_host({})
    assert plain.gpu_driver is None and plain.gpus == {}


# --------------------------------------------------------------------------- torchrun / DDP


def test_ddp_rank_layout_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sweeper.config import launch
    from sweeper.training import distributed

    for key, value in {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "2",
                       "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(key, value)
    info = launch.launch()
    assert info.active and not info.is_main and info.local_rank == 2
    assert launch.identity() == {"world_size": 4}
    # Rank 0 measures the GPUs of all four ranks unless energy.gpus says otherwise.
    assert distributed.measured_gpus(None, torch.device("cuda", 0)) == (0, 1, 2, 3)
    assert distributed.measured_gpus((5,), torch.device("cuda", 0)) == (5,)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launch.identity() == {}
    assert distributed.measured_gpus(None, torch.device("cuda", 1)) == (1,)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_record_one_run(tmp_path: Path, sqlite_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "sweeper", "model=mlp", "device=cpu", *TINY, f"storage.url={sqlite_url}"],
        cwd=tmp_path, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sql_rows(sqlite_url, "select status, hardware, config, train_samples from runs")
    assert len(runs) == 1, "only rank 0 records"
    status, hardware, config, train_samples = runs[0]
    assert status == "completed"
    dist = json.loads(hardware)["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert json.loads(config)["world_size"] == 2  # a DDP run is its own configuration
    (epoch_samples,) = sql_rows(
        sqlite_url, "select samples from phases where kind='train_epoch'"
    )[0]
    # dataset.max_samples=400 training samples: 200 per rank, counted over both.
    assert train_samples == epoch_samples == 400
