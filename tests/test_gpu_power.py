"""GPU power limits (issue 23) against the fake NVML: set within the card's constraints,
refused in one line without the permission or out of range, the original always restored
(also after a run that died), two runs on one GPU with different limits refused; and the
fake's stated power-cap model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sweeper.energy.power_limit import PowerLimitRequest, open_power_cap, restore_stale
from sweeper.energy.power_state import state_dir
from sweeper.errors import ConfigError
from tests.fake_nvml import (
    CAP_ALPHA,
    H200_LIMIT_MW,
    CappedLoadGpu,
    Clock,
    FakeGpu,
    FakeNvml,
    capped,
)

ORIGINAL_MW = 650_000  # not the default: restoring must give back what was found


def h200(**kw: object) -> FakeGpu:
    """An H200 as the recording's README gives it: default 700 W, settable 200-700 W."""
    args: dict = dict(enforced_limit_mw=ORIGINAL_MW, management_limit_mw=ORIGINAL_MW,
                      max_limit_mw=H200_LIMIT_MW, uuid="GPU-h200-test")
    args.update(kw)
    return FakeGpu("NVIDIA H200", **args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWEEPER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return state_dir()


def test_limit_is_set_recorded_and_the_original_restored(state: Path) -> None:
    gpu = h200()
    cap = open_power_cap(PowerLimitRequest(fraction=0.6), [0], nvml=FakeNvml([gpu]))
    assert gpu.management_limit_mw == ORIGINAL_MW  # checking changes nothing
    with cap:
        assert gpu.management_limit_mw == gpu.enforced_limit_mw == 420_000
        (file,) = state.glob("*.json")
        assert oct(file.stat().st_mode & 0o777) == "0o600"
        assert json.loads(file.read_text())["original_mw"] == ORIGINAL_MW
        record = cap.record()
    g = record["gpus"]["gpu:0"]
    assert (g["requested_w"], g["applied_w"], g["original_w"], g["default_w"]) == (
        420.0, 420.0, 650.0, 700.0)
    assert (g["min_w"], g["max_w"]) == (200.0, 700.0)
    assert record["requested"] == "gpu.power_limit=0.6"
    assert gpu.management_limit_mw == ORIGINAL_MW
    # the permission probe (its own limit again), the cap, the restore
    assert gpu.limit_sets == [ORIGINAL_MW, 420_000, ORIGINAL_MW]
    assert not list(state.glob("*.json"))


def test_a_failure_inside_the_run_restores_the_original() -> None:
    gpu = h200()
    with pytest.raises(KeyboardInterrupt), open_power_cap(
            PowerLimitRequest(watts=300), None, nvml=FakeNvml([gpu])):
        assert gpu.management_limit_mw == 300_000
        raise KeyboardInterrupt
    assert gpu.management_limit_mw == ORIGINAL_MW


def test_every_gpu_of_the_run_is_capped_within_its_own_default() -> None:
    small = FakeGpu("NVIDIA L4", enforced_limit_mw=72_000, management_limit_mw=72_000,
                    max_limit_mw=72_000, min_limit_mw=40_000, uuid="GPU-l4")
    big = h200()
    with open_power_cap(PowerLimitRequest(fraction=0.8), None, nvml=FakeNvml([small, big])):
        assert (small.management_limit_mw, big.management_limit_mw) == (57_600, 560_000)
    assert (small.management_limit_mw, big.management_limit_mw) == (72_000, ORIGINAL_MW)


def test_without_permission_one_line_names_gpu_range_and_root() -> None:
    gpu = h200(can_set_limit=False)
    with pytest.raises(ConfigError) as info:
        open_power_cap(PowerLimitRequest(fraction=0.8), [0], nvml=FakeNvml([gpu]))
    message = str(info.value)
    assert "\n" not in message
    assert "GPU 0 (NVIDIA H200)" in message and "200-700 W" in message
    assert "root" in message and "NVML_ERROR_NO_PERMISSION" in message
    assert gpu.limit_sets == [] and gpu.management_limit_mw == ORIGINAL_MW


@pytest.mark.parametrize(("request_", "shown"), [
    (PowerLimitRequest(fraction=0.2), "'gpu.power_limit': 0.2 is 140 W"),
    (PowerLimitRequest(watts=800), "'gpu.power_limit_w': 800 is 800 W"),
])
def test_out_of_range_is_refused_with_the_allowed_range(
    request_: PowerLimitRequest, shown: str
) -> None:
    gpu = h200()
    with pytest.raises(ConfigError) as info:
        open_power_cap(request_, [0], nvml=FakeNvml([gpu]))
    assert shown in str(info.value) and "allowed: 200-700 W" in str(info.value)
    assert gpu.limit_sets == []


def test_a_card_without_the_capability_is_refused() -> None:
    gpu = FakeGpu("Tesla K80", max_limit_mw=None)
    with pytest.raises(ConfigError, match=r"GPU 0 \(Tesla K80\) has no settable power limit"):
        open_power_cap(PowerLimitRequest(fraction=0.8), [0], nvml=FakeNvml([gpu]))


def _held_by(state: Path, holder: psutil.Process, limit_mw: int) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "GPU-h200-test.json").write_text(json.dumps({
        "gpu": "NVIDIA H200", "nvml_device": "0", "original_mw": ORIGINAL_MW,
        "limit_mw": limit_mw, "holders": [{"pid": holder.pid, "started": holder.create_time()}],
    }))


def test_two_runs_on_one_gpu_need_the_same_limit(state: Path) -> None:
    other = psutil.Process(os.getppid())  # a live process: another run holding the GPU
    gpu = h200(management_limit_mw=420_000, enforced_limit_mw=420_000)
    _held_by(state, other, 420_000)
    with pytest.raises(ConfigError, match=rf"capped at 420 W by another sweeper run \(pid "
                                          rf"{other.pid}\)"):
        open_power_cap(PowerLimitRequest(fraction=0.8), [0], nvml=FakeNvml([gpu]))
    # The same limit shares the GPU; the original goes back only when the last one leaves.
    with open_power_cap(PowerLimitRequest(fraction=0.6), [0], nvml=FakeNvml([gpu])):
        holders = json.loads((state / "GPU-h200-test.json").read_text())["holders"]
        assert len(holders) == 2
    assert gpu.management_limit_mw == 420_000
    assert json.loads((state / "GPU-h200-test.json").read_text())["holders"][0]["pid"] == \
        other.pid


def test_a_limit_left_by_a_dead_run_is_restored_at_the_next_start(state: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    holder = psutil.Process(dead.pid)
    started = holder.create_time()
    dead.wait()
    gpu = h200(management_limit_mw=420_000, enforced_limit_mw=420_000)
    state.mkdir(parents=True)
    (state / "GPU-h200-test.json").write_text(json.dumps({
        "gpu": "NVIDIA H200", "nvml_device": "0", "original_mw": ORIGINAL_MW,
        "limit_mw": 420_000, "holders": [{"pid": dead.pid, "started": started}]}))
    (line,) = restore_stale(FakeNvml([gpu]))
    assert "restored to 650 W" in line
    assert gpu.management_limit_mw == ORIGINAL_MW and not list(state.glob("*.json"))
    assert restore_stale(FakeNvml([gpu])) == []  # nothing left: no NVML call at all


def test_a_dead_run_is_also_recovered_by_a_run_that_caps_the_gpu(state: Path) -> None:
    gpu = h200(management_limit_mw=300_000, enforced_limit_mw=300_000)
    _held_by(state, psutil.Process(os.getpid()), 300_000)
    state_file = state / "GPU-h200-test.json"
    data = json.loads(state_file.read_text())
    data["holders"][0]["started"] -= 1000  # this pid, but another (earlier) process
    state_file.write_text(json.dumps(data))
    with open_power_cap(PowerLimitRequest(fraction=0.8), [0], nvml=FakeNvml([gpu])) as cap:
        assert gpu.management_limit_mw == 560_000
        assert cap.gpus[0].original_w == 650.0  # the card's own, not the dead run's cap
    assert gpu.management_limit_mw == ORIGINAL_MW


# ------------------------------------------------------------------- the fake's cap model


def test_fake_power_clamps_at_the_limit_and_work_slows_below_the_draw() -> None:
    from sweeper.energy.nvml import NvmlMeter

    clock = Clock()
    gpu = CappedLoadGpu(690.0, clock)
    gpu.management_limit_mw = gpu.enforced_limit_mw = ORIGINAL_MW  # as found: restored
    nvml = FakeNvml([gpu])
    meter = NvmlMeter(nvml=nvml, clock=clock)
    results = {}
    for limit_w in (700, 560, 420):
        nvml.nvmlDeviceSetPowerManagementLimit(gpu, limit_w * 1000)
        (before,) = meter.read()
        took_s = gpu.run(10.0)
        (after,) = meter.read()
        results[limit_w] = (took_s, (after.energy_j - before.energy_j) / took_s)
    meter.close()
    assert results[700] == pytest.approx((10.0, 690.0))  # above the draw: no change
    assert results[560][1] == pytest.approx(560.0)  # clamped at the limit
    assert results[420] == pytest.approx((10.0 * (690 / 420) ** CAP_ALPHA, 420.0))
    energy = {limit: took * power for limit, (took, power) in results.items()}
    assert energy[420] < energy[560] < energy[700]  # alpha < 1: less energy, more time


# ------------------------------------------------------------------------- the report


def _capped_grid(url: str) -> None:
    """A grid as gpu.power_limit=0.6,0.8,1.0 stores it, 3 seeds, energies and times from
    the fake's cap model (a 690 W load on a 700 W card) with 1% noise."""
    import random

    from sweeper.store import runs as store_runs
    from sweeper.store.db import Store
    from tests.conftest import run_row

    store = Store(url)
    sweep = store_runs.ensure_sweep(store, "grid: limits")
    rng = random.Random(0)
    for seed in range(3):
        for fraction in (0.6, 0.8, 1.0):
            limit_w = 700.0 * fraction
            power_w, factor = capped(690.0, limit_w)
            time_s = 100.0 * factor * rng.gauss(1.0, 0.01)
            gpu = {"gpu": "gpu:0", "nvml_device": "0", "name": "NVIDIA H200",
                   "original_w": 700.0, "default_w": 700.0, "min_w": 200.0, "max_w": 700.0,
                   "requested_w": limit_w, "applied_w": limit_w}
            store_runs.insert_run(store, run_row(
                sweep, status="completed", seed=seed, hardware_id="h200", meter_source="nvml",
                config={"seed": seed, "gpu": {"power_limit": fraction}},
                hardware={"gpus": {"gpu:0": {"name": "NVIDIA H200", "power_limit_w": 700.0}},
                          "gpu_power": {"requested": f"gpu.power_limit={fraction:g}",
                                        "gpus": {"gpu:0": gpu}}},
                energy_train_j=power_w * time_s, train_duration_s=time_s,
                val_accuracy=0.9 + rng.gauss(0.0, 0.002)))
    store.dispose()


def test_report_shows_energy_saved_and_time_added_per_limit(tmp_path: Path) -> None:
    from sweeper.report import build_report
    from sweeper.store.db import Store

    url = f"sqlite:///{tmp_path / 'limits.db'}"
    _capped_grid(url)
    report = build_report(Store(url), tmp_path / "report", parquet=False)
    lines = [g for g in report.guidelines if g.startswith("GPU power limit")]
    assert len(lines) == 2
    low = next(line for line in lines if line.startswith("GPU power limit 420 W"))
    assert "(0.60 of the default) vs 700 W" in low and "not established" not in low
    assert "over 3 matched run pair(s)" in low
    effects = __import__("pandas").read_csv(tmp_path / "report" / "power_limits.csv")
    row = effects[(effects["model"] == "mlp") & (effects["limit_w"] == 420.0)].iloc[0]
    # the model: energy ratio (420 / 690) x (690 / 420) ** 0.5 = (420 / 690) ** 0.5
    expected = 1.0 - (420 / 690) ** CAP_ALPHA
    assert row["energy_saved_low"] - 0.01 < expected < row["energy_saved_high"] + 0.01
    assert row["energy_saved_low"] > 0.15 and row["time_added_low"] > 0.2
    assert (tmp_path / "report" / "power_limit.png").stat().st_size > 5000
    # The study's capping finding is checked on these runs: the lowest limit, with n.
    capping = next(f for f in report.findings if f.finding.startswith("5."))
    assert capping.measured.startswith("420 W vs 700 W: training energy saved +")
    assert "n=" in capping.measured and capping.verdict.startswith("holds: energy saved")


# ------------------------------------------------------------------------- the search


def test_power_limit_is_a_search_dimension_and_the_frontier_scales_by_it() -> None:
    from optuna.distributions import CategoricalDistribution

    from sweeper.search.frontier_energy import FrontierEnergy, SizedParams, limit_label
    from sweeper.search.space import parse_space

    space = parse_space({"gpu.power_limit": "choice(0.6,0.8,1.0)", "model": "choice(a,b)"})
    assert space.distributions["gpu.power_limit"] == CategoricalDistribution([0.6, 0.8, 1.0])
    assert "gpu.power_limit=0.6" in space.overrides({"gpu.power_limit": 0.6, "model": "a"})

    macs = {"a": 1e5, "b": 3e5}

    def sized(p: dict) -> SizedParams:
        return SizedParams(macs[p["model"]], int(macs[p["model"]] / 10), 32, "fp32", 1000,
                           limit_label(p["gpu.power_limit"], None))

    power_w, factor = capped(690.0, 420.0)
    ratio = power_w * factor / 690.0  # the fake's energy at 0.6 of 700 W vs uncapped
    energy = FrontierEnergy(sized)
    energy.observe([({"model": "a", "gpu.power_limit": 1.0}, 10.0),
                    ({"model": "a", "gpu.power_limit": 0.6}, 10.0 * ratio),
                    ({"model": "b", "gpu.power_limit": 1.0}, 30.0)])
    # b was never run at 0.6: its measured energy scaled by what 0.6 did to a
    assert energy.predict_j({"model": "b", "gpu.power_limit": 0.6}) == pytest.approx(30 * ratio)
    # a limit never measured beside the reference: no factor to apply, the measured work
    assert energy.predict_j({"model": "b", "gpu.power_limit": 0.8}) == pytest.approx(30.0)
    # b measured only at 0.6 predicts its energy at the card's limit, not 0.6's
    energy.observe([({"model": "a", "gpu.power_limit": 1.0}, 10.0),
                    ({"model": "a", "gpu.power_limit": 0.6}, 10.0 * ratio),
                    ({"model": "b", "gpu.power_limit": 0.6}, 30.0 * ratio)])
    assert energy.predict_j({"model": "b", "gpu.power_limit": 1.0}) == pytest.approx(30.0)


def test_capped_runs_stay_out_of_the_estimator_fits() -> None:
    from types import SimpleNamespace

    from sweeper.predict.observations import observations_from_runs

    def run(run_id: int, gpu: dict) -> SimpleNamespace:
        return SimpleNamespace(
            id=run_id, status="completed", energy_per_train_sample_j=0.1, params=10,
            macs_per_sample=100.0, hardware_id="h", meter_source="nvml", model="mlp",
            dataset="digits", batch=32, precision="fp32", config={"gpu": gpu})

    rows = [run(1, {"power_limit": None}), run(2, {"power_limit": 0.6}),
            run(3, {"power_limit": 1.0}), run(4, {"power_limit_w": 300})]
    assert [o.run_id for o in observations_from_runs(rows)] == [1, 3]


# ------------------------------------------------------------------------- auto


@pytest.mark.parametrize(("max_slowdown", "best_w"), [(0.1, 630.0), (0.2, 490.0), (0.0, 700.0)])
def test_auto_keeps_the_limit_the_fake_model_says_is_best(
    max_slowdown: float, best_w: float
) -> None:
    """A 690 W load on a 700 W H200, alpha 0.5: at 0.9/0.8/0.7/0.6 of 700 W a step takes
    4.6%, 11.0%, 18.7%, 28.2% longer and less energy each time, so the lowest limit within
    the bound wins: 630 W at 10%, 490 W at 20%, the default at 0%."""
    from sweeper.energy.nvml import NvmlMeter
    from sweeper.energy.power_limit_auto import AutoPowerLimit

    expected = {}
    for fraction in (1.0, 0.9, 0.8, 0.7, 0.6):
        limit_w = round(700.0 * fraction)
        power_w, factor = capped(690.0, limit_w)
        expected[limit_w] = (factor, power_w * factor)
    allowed = [w for w, (f, _) in expected.items() if f <= 1 + max_slowdown]
    assert min(allowed, key=lambda w: expected[w][1]) == best_w  # what the model says

    clock = Clock()
    gpu = CappedLoadGpu(690.0, clock)
    gpu.management_limit_mw = gpu.enforced_limit_mw = ORIGINAL_MW  # as found: restored
    nvml = FakeNvml([gpu])
    meter = NvmlMeter(nvml=FakeNvml([gpu]), clock=clock)
    request = PowerLimitRequest(auto=True, max_slowdown=max_slowdown)
    steps = 400
    with open_power_cap(request, [0], nvml=nvml) as cap:
        auto = AutoPowerLimit(cap, lambda: meter.read()[0].energy_j, clock, steps)
        for step in range(steps):
            gpu.run(0.05)
            auto.on_step(step)
        assert auto.chosen is not None and auto.chosen.limit_w == best_w
        assert gpu.management_limit_mw == best_w * 1000  # kept for the rest of the run
        profile = cap.record()["auto"]
    meter.close()
    assert [w["limit_w"] for w in profile["windows"]] == [700.0, 630.0, 560.0, 490.0, 420.0]
    assert profile["chosen_w"] == best_w
    assert gpu.management_limit_mw == ORIGINAL_MW  # and the original back afterwards


def test_auto_with_a_short_epoch_keeps_what_it_measured() -> None:
    from sweeper.energy.power_limit_auto import AutoPowerLimit

    clock = Clock()
    gpu = CappedLoadGpu(690.0, clock)
    with open_power_cap(PowerLimitRequest(auto=True), [0], nvml=FakeNvml([gpu])) as cap:
        auto = AutoPowerLimit(cap, lambda: gpu.counter_mj / 1000.0, clock, 20)
        for step in range(20):
            gpu.run(0.5)
            auto.on_step(step)
        assert auto.done and 2 <= len(auto.windows) < 5
        assert auto.chosen is not None and gpu.management_limit_mw == auto.chosen.limit_w * 1000


def test_a_missing_or_lost_gpu_is_one_line_and_nvml_is_released() -> None:
    nvml = FakeNvml([h200()])
    with pytest.raises(ConfigError, match=r"GPU\(s\) \[3\] not found \(1 visible\)"):
        open_power_cap(PowerLimitRequest(fraction=0.8), [3], nvml=nvml)
    lost = FakeNvml([h200(fail=True)])
    with pytest.raises(ConfigError, match=r"GPU 0 \(NVIDIA H200\) \(allowed 200-700 W\) "
                                          r"was refused by NVML \(GPU is lost\)"):
        open_power_cap(PowerLimitRequest(fraction=0.8), [0], nvml=lost)
    with pytest.raises(ConfigError, match=r"NVML cannot read GPU 0 \(NVML device GPU-gone\)"):
        open_power_cap(PowerLimitRequest(fraction=0.8), [0], nvml=FakeNvml([h200()]),
                       cuda_visible_devices="GPU-gone")
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)
    assert (lost.init_calls, lost.shutdown_calls) == (1, 1)


def test_report_effects_and_fits_keep_runs_at_different_limits_apart(tmp_path: Path) -> None:
    """Batch 32 measured only uncapped and batch 128 only at 0.6 of the limit: no batch
    effect may pair them (the cap, not the batch, would make the difference), and the fits
    leave the capped runs out."""
    from sweeper.report import build_report
    from sweeper.report import effects as effects_module
    from sweeper.report.data import load_runs
    from sweeper.report.power_limits import capped_by_sweeper, with_limits
    from sweeper.store import runs as store_runs
    from sweeper.store.db import Store
    from tests.conftest import run_row

    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    store = Store(url)
    sweep = store_runs.ensure_sweep(store, "grid: mixed")
    for seed in range(3):
        for batch, fraction in ((32, 1.0), (128, 0.6)):
            gpu = {"gpu": "gpu:0", "original_w": 700.0, "default_w": 700.0, "min_w": 200.0,
                   "max_w": 700.0, "requested_w": 700.0 * fraction,
                   "applied_w": 700.0 * fraction}
            store_runs.insert_run(store, run_row(
                sweep, status="completed", seed=seed, batch=batch, hardware_id="h200",
                meter_source="nvml", config={"gpu": {"power_limit": fraction}},
                hardware={"gpu_power": {"gpus": {"gpu:0": gpu}}}, params=1000,
                macs_per_sample=1e5, energy_train_j=100.0 * fraction + seed,
                energy_per_train_sample_j=0.1 * fraction, train_duration_s=10.0,
                val_accuracy=0.9, test_accuracy=0.9))
    runs = with_limits(store, load_runs(store))
    assert list(capped_by_sweeper(runs)) == [False, True] * 3
    report = build_report(store, tmp_path / "report", parquet=False)
    batch = next(c for c in report.findings if c.finding.startswith("3."))
    assert batch.verdict == "not testable" and batch.measured.startswith("no matched runs")
    assert not [c for c in effects_module.effects(runs) if c.factor == "batch"]
    # Without the limit in the frame the two batches would pair: the match is the limit's.
    bare = runs.drop(columns=["power_limit_w"])
    assert [c for c in effects_module.effects(bare) if c.factor == "batch"]
    store.dispose()
