"""Idle baselines (measured once per hardware and meter, reused within their age) and the
net-of-idle columns computed from them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sweeper.energy.estimate import EstimateMeter
from sweeper.energy.nvml import NvmlMeter
from sweeper.energy.select import MeterSet
from sweeper.run.idle import IdlePower, idle_power
from sweeper.run.net import net_columns
from sweeper.store.db import Store
from tests.fake_nvml import steady_gpu


def _prepared(store: Store, meters: MeterSet, seconds: float = 0.5, max_age_h: float = 24.0):
    idle = SimpleNamespace(seconds=seconds, max_age_h=max_age_h)
    spec = SimpleNamespace(energy=SimpleNamespace(idle=idle, sample_hz=20.0))
    hardware = {"hardware_id": "hw-test", "host": "node-1"}
    return SimpleNamespace(spec=spec, meters=meters, hardware=hardware, store=store,
                           device=torch.device("cpu"))


def test_idle_power_is_measured_once_then_reused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    meters = MeterSet([NvmlMeter(nvml=steady_gpu(120.0, period_s=0.01))])
    first = idle_power(_prepared(store, meters))
    assert first is not None and first.baseline_id is not None
    assert first.by_domain["gpu:0"] == pytest.approx(120.0, rel=0.05)
    again = idle_power(_prepared(store, meters))
    assert again is not None and again.baseline_id == first.baseline_id  # reused, not re-read
    expired = idle_power(_prepared(store, meters, max_age_h=0.0))
    assert expired is not None and expired.baseline_id != first.baseline_id
    assert idle_power(_prepared(store, meters, seconds=0.0)) is None  # disabled
    store.dispose()


def test_estimate_meter_has_no_idle_by_convention(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    idle = idle_power(_prepared(store, MeterSet([EstimateMeter()])))
    assert idle is not None and idle.by_domain == {} and idle.baseline_id is None
    cols, warnings = net_columns(
        {"energy_train_j": 50.0, "train_duration_s": 2.0, "train_samples": 100},
        idle, {"cpu": "estimate", "memory": "estimate"}, 3.0,
    )
    assert cols["idle_power_w"] == 0.0 and cols["energy_train_net_j"] == 50.0
    assert cols["energy_per_train_sample_net_j"] == 0.5 and not warnings
    store.dispose()


def test_net_subtracts_idle_of_measured_domains_and_clamps_at_zero() -> None:
    idle = IdlePower({"gpu:0": 120.0}, baseline_id=7)
    values = {
        "energy_train_j": 1000.0, "train_duration_s": 5.0, "train_samples": 400,
        "energy_inference_j": 10.0, "inference_duration_s": 0.1, "inference_samples": 64,
        "energy_total_j": 1500.0,
    }
    sources = {"gpu:0": "nvml", "cpu": "estimate", "memory": "estimate"}
    cols, warnings = net_columns(values, idle, sources, run_duration_s=6.0)
    assert cols["idle_power_w"] == 120.0 and cols["idle_baseline_id"] == 7
    assert cols["energy_train_net_j"] == pytest.approx(400.0)  # 1000 - 120 W x 5 s
    assert cols["energy_per_train_sample_net_j"] == pytest.approx(1.0)
    assert cols["energy_inference_net_j"] == 0.0  # 10 J < 12 J of idle: clamped
    assert cols["energy_total_net_j"] == pytest.approx(780.0)
    assert len(warnings) == 1 and "net E_in clamped to 0 J" in warnings[0]


def test_net_is_withheld_when_a_measured_domain_has_no_baseline() -> None:
    cols, warnings = net_columns(
        {"energy_train_j": 10.0, "train_duration_s": 1.0}, IdlePower({"gpu:0": 100.0}, 3),
        {"gpu:0": "nvml", "gpu:1": "nvml"}, 1.0,
    )
    assert "energy_train_net_j" not in cols and "gpu:1" in warnings[0]
    assert net_columns({"energy_train_j": 1.0}, None, {"cpu": "estimate"}, 1.0) == ({}, [])


@pytest.mark.slow
def test_a_real_run_stores_net_load_and_a_floored_inference(tmp_path: Path) -> None:
    """Through the CLI with the estimate meter: net equals gross (no idle by convention),
    the machine's load is stored, the inference phase lasts at least its floor, and the
    protocol=study benchmark passes the whole test set (a multiple of its size)."""
    import sqlite3

    from tests.conftest import TINY, run_cli

    db = tmp_path / "r.db"
    common = [*TINY, "meter=estimate", f"storage.url=sqlite:///{db}"]
    done = run_cli([*common, "inference.min_seconds=0.3"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    study = run_cli([*common, "inference.protocol=study", "inference.passes=2",
                     "inference.min_seconds=0", "inference.batch=32"], tmp_path)
    assert study.returncode == 0, study.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select energy_train_j, energy_train_net_j, idle_power_w, other_cpu_pct, "
            "machine_busy, inference_duration_s, inference_samples from runs order by id"
        ).fetchall()
        test_samples = conn.execute(
            "select samples from phases where kind='test' and run_id=2").fetchone()[0]
        hardware = conn.execute("select hardware from runs where id=1").fetchone()[0]
        inference_low = conn.execute(
            "select low_resolution from phases where kind='inference' and run_id=1"
        ).fetchone()[0]
    gross, net, idle_w, other, busy, inference_s, _ = rows[0]
    assert net == gross and idle_w == 0.0
    assert other is not None and 0.0 <= other <= 100.0 and busy in (0, 1)
    assert inference_s >= 0.3 and inference_low is None  # 0.3 s > 5 ticks of 10 ms
    assert rows[1][6] == 2 * test_samples  # the whole test set, twice
    assert "no idle power by convention" in done.stdout
    # python -m sweeper lets OpenMP threads spin only briefly, unless the user chose
    chosen = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
              if k in os.environ]
    expected = "; ".join(chosen) or "GOMP_SPINCOUNT=1000"
    assert json.loads(hardware)["omp_wait_policy"] == expected
