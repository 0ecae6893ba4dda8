"""The estimate meter on this machine: real CPU time, real RSS, CodeCarbon's TDP table."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

import psutil
import pytest

from sweeper.energy import EnergySampler
from sweeper.energy.codecarbon_data import codecarbon_data_path
from sweeper.energy.cpu_name import cpu_model_name
from sweeper.energy.estimate import MEMORY_W_PER_GIB, EstimateMeter
from sweeper.energy.tdp import CODECARBON_DEFAULT_TDP_W, lookup_cpu_tdp_w


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def table_tdp_w(name: str) -> float:
    with open(codecarbon_data_path("hardware", "cpu_power.csv"), encoding="utf-8") as f:
        return next(float(r["TDP"]) for r in csv.DictReader(f) if r["Name"] == name)


def test_cpu_bound_phase_costs_more_than_idle_phase() -> None:
    meter = EstimateMeter()
    sampler = EnergySampler([meter], sample_hz=10).start()
    with sampler.phase("busy") as b:
        busy(0.5)
    with sampler.phase("idle") as i:
        time.sleep(0.5)
    summary = sampler.stop()
    busy_j, idle_j = b.result.by_domain["cpu"], i.result.by_domain["cpu"]
    # At most one core busy: TDP * 0.5 s / n_cores; allow a loaded shared machine.
    ceiling_j = meter.cpu_tdp_w * 0.5 / meter.n_cores
    assert 0.1 * ceiling_j < busy_j <= ceiling_j * 1.1
    assert busy_j > 5 * idle_j
    assert b.result.energy_j > i.result.energy_j
    assert b.result.source == i.result.source == summary.source == "estimate"
    assert summary.warnings == []


def test_tdp_comes_from_codecarbon_table_or_its_default() -> None:
    meter = EstimateMeter()
    assert meter.cpu_model == cpu_model_name()
    if meter.tdp.matched_name is not None:
        assert meter.tdp.source.startswith("codecarbon cpu_power.csv")
        assert meter.cpu_tdp_w == table_tdp_w(meter.tdp.matched_name)
    else:
        from codecarbon.external.hardware import POWER_CONSTANT

        assert meter.cpu_tdp_w == CODECARBON_DEFAULT_TDP_W == POWER_CONSTANT
        assert "default" in meter.tdp.source
    assert meter.describe()["cpu_tdp_w"] == f"{meter.cpu_tdp_w:g}"


@pytest.mark.parametrize(
    ("model", "table_name"),
    [
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Intel Xeon Gold 6248"),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "Intel Core i7-8700K"),
        ("AMD EPYC 7742 64-Core Processor", "AMD EPYC 7742"),
        ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X"),
    ],
)
def test_model_names_match_table_rows(model: str, table_name: str) -> None:
    found = lookup_cpu_tdp_w(model)
    assert found.matched_name == table_name
    assert found.tdp_w == table_tdp_w(table_name)


@pytest.mark.parametrize("model", [None, "", "AMD EPYC", "Totally Unknown CPU 9000X"])
def test_unknown_models_use_the_documented_default(model: str | None) -> None:
    found = lookup_cpu_tdp_w(model)
    assert (found.tdp_w, found.matched_name) == (CODECARBON_DEFAULT_TDP_W, None)


def test_override_scales_cpu_energy() -> None:
    meter = EstimateMeter(cpu_tdp_w=40.0)
    assert meter.tdp.source == "override (cpu_tdp_w)"
    before = psutil.Process().cpu_times()
    busy(0.2)
    after = psutil.Process().cpu_times()
    cpu_j = meter.read()[0].energy_j
    used_s = (after.user + after.system) - (before.user + before.system)
    assert cpu_j == pytest.approx(40.0 * used_s / meter.n_cores, abs=40.0 * 0.03 / meter.n_cores)
    with pytest.raises(ValueError):
        EstimateMeter(cpu_tdp_w=0)


def test_memory_energy_follows_rss() -> None:
    meter = EstimateMeter()
    time.sleep(0.3)
    cpu, mem = meter.read()
    assert (cpu.domain, mem.domain) == ("cpu", "memory")
    rss_gib = psutil.Process().memory_info().rss / 2**30
    assert mem.power_w == pytest.approx(MEMORY_W_PER_GIB * rss_gib, rel=0.2)
    assert mem.energy_j == pytest.approx(mem.power_w * 0.3, rel=0.3)


def test_child_process_cpu_time_is_counted() -> None:
    meter = EstimateMeter(children_refresh_s=0.0)
    code = "import time\nend = time.perf_counter() + 0.4\nwhile time.perf_counter() < end: pass"
    subprocess.run([sys.executable, "-c", code], check=True)
    cpu_j = meter.read()[0].energy_j
    assert cpu_j > 0.1 * meter.cpu_tdp_w * 0.4 / meter.n_cores  # the parent only waited


def test_boundary_uncertainty_is_one_cpu_time_tick_at_the_rated_power() -> None:
    """Each phase boundary may miss one CPU-time tick of each process in the tree."""
    meter = EstimateMeter(cpu_tdp_w=80.0)
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    expected_j = 80.0 * tick_s / meter.n_cores
    assert meter.boundary_uncertainty_j("cpu", 40.0) == pytest.approx(expected_j)
    assert meter.boundary_uncertainty_j("memory", 40.0) == 0.0
    summary = EnergySampler([meter], sample_hz=20).start()
    with summary.phase("train_epoch") as handle:
        busy(0.05)
    summary.stop()
    assert handle.result.energy_uncertainty_j >= 2 * expected_j  # two boundaries
    meter.close()


def test_a_meter_whose_uncertainty_fails_is_said_not_hidden(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter = EstimateMeter(cpu_tdp_w=80.0)

    def broken(domain: str, power_w: float, t_s: float | None = None) -> float:
        raise AttributeError("no such attribute")

    monkeypatch.setattr(meter, "boundary_uncertainty_j", broken)
    sampler = EnergySampler([meter], sample_hz=20).start()
    for _ in range(2):
        with sampler.phase("train_epoch"):
            busy(0.02)
    sampler.stop()
    meter.close()
    said = [r for r in caplog.records if "boundary_uncertainty_j of cpu failed" in r.message]
    assert len(said) == 1 and "AttributeError" in said[0].message


def test_cpu_time_that_surfaces_late_is_credited_as_the_cores_allow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker found by a late /proc scan (or reaped unseen) brings its CPU time in one
    read: no read is credited more than every core busy since the last, the rest comes
    later and counts in the boundary uncertainty meanwhile, and the total is kept."""
    now, cpu_s = [0.0], [0.0]
    monkeypatch.setattr(EstimateMeter, "_cpu_seconds", lambda self: cpu_s[0])
    monkeypatch.setattr(EstimateMeter, "_memory_power_w", lambda self: 0.0)
    meter = EstimateMeter(cpu_tdp_w=80.0, clock=lambda: now[0])
    tick_j = meter.boundary_uncertainty_j("cpu", 0.0)
    cores, per_cpu_s_j = meter.n_cores, 80.0 / meter.n_cores

    now[0], cpu_s[0] = 0.1, 0.05 + 3.0  # 50 ms of its own, 3 s of a child found late
    first_j = meter.read()[0].energy_j
    assert first_j == pytest.approx(80.0 * 0.1)  # every core for 0.1 s: the TDP, no more
    deferred_s = 3.05 - cores * 0.1
    assert meter.boundary_uncertainty_j("cpu", 0.0) == pytest.approx(
        tick_j + per_cpu_s_j * deferred_s)
    for step in range(1, 200):
        now[0] = 0.1 + 0.1 * step
        readings = meter.read()
    assert readings[0].energy_j == pytest.approx(per_cpu_s_j * 3.05)  # the total is kept
    assert meter.boundary_uncertainty_j("cpu", 0.0) == pytest.approx(tick_j)
