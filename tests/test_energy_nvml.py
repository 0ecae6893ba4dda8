"""NVML meter against a fake pynvml module: counter, power integration, failures."""

from __future__ import annotations

import time

import pytest

from sweeper.energy import EnergySampler
from sweeper.energy.nvml import NvmlMeter, visible_devices
from sweeper.energy.types import MeterReadError
from sweeper.errors import MeterUnavailable
from tests.fake_nvml import Clock, FakeGpu, FakeNvml, NVMLError, NVMLError_LibraryNotFound


@pytest.fixture(autouse=True)
def no_visible_devices_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set CUDA_VISIBLE_DEVICES explicitly; a GPU machine's own must not leak in."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_counter_supported_gives_counter_difference() -> None:
    gpu = FakeGpu("NVIDIA H100 80GB HBM3", power_mw=250_000, counter_mj=1_000_000)
    meter = NvmlMeter(nvml=FakeNvml([gpu]))
    (r,) = meter.read()
    assert (r.domain, r.source, r.energy_j, r.power_w) == ("gpu:0", "nvml", 0.0, 250.0)
    gpu.counter_mj = 1_250_500
    gpu.power_mw = 310_000
    (r,) = meter.read()
    assert r.energy_j == pytest.approx(250.5)
    assert r.power_w == pytest.approx(310.0)
    assert meter.describe()["gpu:0.energy_method"] == "total_energy_counter"


def test_counter_unsupported_integrates_power_with_trapezoids() -> None:
    clock = Clock()
    gpu = FakeGpu(b"Tesla P100-PCIE-16GB", power_mw=100_000, counter_mj=None)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), clock=clock)
    clock.t += 2.0
    gpu.power_mw = 200_000
    (r,) = meter.read()
    assert r.energy_j == pytest.approx(300.0)  # (100 + 200) / 2 W * 2 s
    clock.t += 1.0
    (r,) = meter.read()
    assert r.energy_j == pytest.approx(500.0)  # + 200 W * 1 s
    info = meter.describe()
    assert info["gpu:0.name"] == "Tesla P100-PCIE-16GB"  # bytes from old bindings decoded
    assert info["gpu:0.energy_method"] == "power_usage_integration"  # no instant field


def test_two_gpus_mixed_methods_and_identity() -> None:
    clock = Clock()
    gpus = [
        FakeGpu("NVIDIA A100-SXM4-40GB", power_mw=50_000, counter_mj=5_000),
        FakeGpu("Tesla V100", power_mw=80_000, counter_mj=None, enforced_limit_mw=None),
    ]
    nvml = FakeNvml(gpus)
    meter = NvmlMeter(nvml=nvml, clock=clock)
    assert meter.gpu_indices == [0, 1]
    gpus[0].counter_mj = 15_000
    clock.t += 0.5
    got = {r.domain: r.energy_j for r in meter.read()}
    assert got == {"gpu:0": pytest.approx(10.0), "gpu:1": pytest.approx(40.0)}
    info = meter.describe()
    assert info["nvml_driver_version"] == "550.54.15"
    assert info["gpu:0.power_limit_w"] == "300"  # enforced limit
    assert info["gpu:1.power_limit_w"] == "250"  # fell back to the management limit
    stats = meter.gpu_stats()
    assert [s.index for s in stats] == [0, 1]
    assert stats[0].utilization_gpu_pct == 87 and stats[0].memory_used_bytes == 3 * 2**30

    only_second = NvmlMeter([1], nvml=nvml, clock=clock)
    assert [r.domain for r in only_second.read()] == ["gpu:1"]


def test_stats_flattens_utilisation_and_memory_per_gpu() -> None:
    gpus = [
        FakeGpu("NVIDIA H100", power_mw=1, counter_mj=0),
        FakeGpu("NVIDIA H100", power_mw=1, counter_mj=0, util_pct=12, memory_used_b=512 * 2**20),
    ]
    assert NvmlMeter(nvml=FakeNvml(gpus)).stats() == {
        "gpu:0.util_pct": 87.0,
        "gpu:0.memory_used_mib": 3072.0,
        "gpu:1.util_pct": 12.0,
        "gpu:1.memory_used_mib": 512.0,
    }


def test_sampler_records_gpu_utilisation_and_survives_failing_stats() -> None:
    gpu = FakeGpu("NVIDIA L4", power_mw=70_000, counter_mj=0, util_pct=60)
    sampler = EnergySampler([NvmlMeter(nvml=FakeNvml([gpu]))], sample_hz=100).start()
    with sampler.phase("train_epoch") as ok:
        time.sleep(0.1)
    gpu.stats_fail = True
    with sampler.phase("train_epoch", 1) as broken:
        gpu.counter_mj = 5_000
        time.sleep(0.1)
    summary = sampler.stop()

    assert ok.result.utilisation["gpu:0.util_pct"] == 60.0
    assert ok.result.utilisation["gpu:0.memory_used_mib"] == 3072.0
    assert "gpu:0.util_pct" not in broken.result.utilisation
    assert 0 <= broken.result.utilisation["process.cpu_util_pct"] <= 100
    assert broken.result.by_domain == {"gpu:0": pytest.approx(5.0)}  # energy still measured
    assert summary.by_domain == {"gpu:0": pytest.approx(5.0)}
    (warning,) = summary.warnings
    assert "nvml stats() failed" in warning and "Unknown Error" in warning


def test_failing_call_during_read_raises_clear_error() -> None:
    gpu = FakeGpu("NVIDIA L4", power_mw=70_000, counter_mj=0)
    meter = NvmlMeter(nvml=FakeNvml([gpu]))
    gpu.fail = True
    with pytest.raises(MeterReadError, match=r"GPU 0 \(NVIDIA L4\).*GPU is lost"):
        meter.read()
    with pytest.raises(MeterReadError):
        meter.gpu_stats()


def test_first_probe_error_of_any_kind_falls_back_to_power() -> None:
    class Flaky(FakeNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> float:
            raise NVMLError("Unknown Error")

    clock = Clock()
    meter = NvmlMeter(nvml=Flaky([FakeGpu("g", power_mw=10_000, counter_mj=1)]), clock=clock)
    clock.t += 1.0
    assert meter.read()[0].energy_j == pytest.approx(10.0)


def test_init_failure_and_bad_indices_are_unavailable() -> None:
    nvml = FakeNvml([], init_error=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    with pytest.raises(MeterUnavailable, match="no NVIDIA driver"):
        NvmlMeter(nvml=nvml)
    assert nvml.shutdown_calls == 0

    empty = FakeNvml([])
    with pytest.raises(MeterUnavailable, match="no GPUs"):
        NvmlMeter(nvml=empty)
    assert empty.shutdown_calls == 1  # init succeeded, so it is released

    with pytest.raises(MeterUnavailable, match=r"\[3\] do not exist"):
        NvmlMeter([3], nvml=FakeNvml([FakeGpu("g", power_mw=1, counter_mj=0)]))


def test_close_releases_nvml_once() -> None:
    nvml = FakeNvml([FakeGpu("g", power_mw=1, counter_mj=0)])
    meter = NvmlMeter(nvml=nvml)
    meter.close()
    meter.close()
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)


def test_real_pynvml_without_driver_is_unavailable() -> None:
    pytest.importorskip("pynvml")
    try:
        meter = NvmlMeter()
    except MeterUnavailable as e:
        assert "NVML" in str(e) or "GPU" in str(e)
    else:  # a machine with a GPU: the real meter must read
        readings = meter.read()
        meter.close()
        assert readings and all(r.domain.startswith("gpu:") for r in readings)


def _three_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(f"GPU {i}", power_mw=100_000 * (i + 1), counter_mj=1_000.0 * i,
                uuid=f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd")
        for i in range(3)
    ]


def test_visible_devices_parsing_follows_cuda() -> None:
    assert visible_devices(None) is None
    assert visible_devices("") == []
    assert visible_devices("2, 0") == ["2", "0"]
    assert visible_devices("1,-1,2") == ["1"]  # CUDA ignores everything from a bad entry on
    assert visible_devices("GPU-abc,3") == ["GPU-abc", "3"]


def test_cuda_index_maps_through_visible_devices_to_the_physical_gpu() -> None:
    gpus = _three_gpus()
    meter = NvmlMeter(nvml=FakeNvml(gpus), cuda_visible_devices="2,0")
    gpus[2].counter_mj += 5_000.0  # only physical GPU 2 works
    readings = {r.domain: r for r in meter.read()}
    assert readings["gpu:0"].energy_j == pytest.approx(5.0)  # cuda:0 is physical GPU 2
    assert readings["gpu:1"].energy_j == 0.0
    assert readings["gpu:0"].power_w == pytest.approx(300.0)
    info = meter.describe()
    assert (info["gpu:0.name"], info["gpu:0.nvml_device"]) == ("GPU 2", "2")
    assert info["gpu:1.nvml_device"] == "0"


def test_uuid_entries_are_opened_by_uuid_and_env_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = _three_gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpus[1].uuid)
    meter = NvmlMeter(nvml=FakeNvml(gpus))
    assert meter.gpu_indices == [0]
    assert meter.describe()["gpu:0.name"] == "GPU 1"


def test_hidden_or_unmeasurable_gpus_are_unavailable() -> None:
    with pytest.raises(MeterUnavailable, match="CUDA_VISIBLE_DEVICES shows 1"):
        NvmlMeter([1], nvml=FakeNvml(_three_gpus()), cuda_visible_devices="0")
    with pytest.raises(MeterUnavailable, match="no GPUs"):
        NvmlMeter(nvml=FakeNvml(_three_gpus()), cuda_visible_devices="")
    with pytest.raises(MeterUnavailable, match="MIG instance"):
        NvmlMeter(nvml=FakeNvml(_three_gpus()), cuda_visible_devices="MIG-1234")
    with pytest.raises(MeterUnavailable, match="NVML device GPU-nope"):
        NvmlMeter(nvml=FakeNvml(_three_gpus()), cuda_visible_devices="GPU-nope")


def test_a_gpu_shared_with_other_processes_is_said_per_phase_and_run() -> None:
    """NVML's counter is the whole GPU's: another process's work on it counts in the run's
    joules. The meter lists the GPU's compute processes at every poll; a phase keeps the
    peak count besides this process, and the run's warning says so."""
    import os

    from sweeper.energy.contention import shared_gpu_warning

    alone = FakeGpu("NVIDIA H100", power_mw=1, counter_mj=0, processes=[os.getpid()])
    shared = FakeGpu("NVIDIA H100", power_mw=1, counter_mj=0,
                     processes=[os.getpid(), 4242, 4243])
    # in a container NVML may list the host's pid for this process: one process is ours
    contained = FakeGpu("NVIDIA H100", power_mw=1, counter_mj=0, processes=[987654])
    stats = NvmlMeter(nvml=FakeNvml([alone, shared, contained])).stats()
    assert (stats["gpu:0.other_processes"], stats["gpu:1.other_processes"],
            stats["gpu:2.other_processes"]) == (0.0, 2.0, 0.0)

    gpu = FakeGpu("NVIDIA L4", power_mw=70_000, counter_mj=0, processes=[os.getpid()])
    sampler = EnergySampler([NvmlMeter(nvml=FakeNvml([gpu]))], sample_hz=100).start()
    with sampler.phase("train_epoch") as quiet:
        time.sleep(0.1)
    with sampler.phase("train_epoch", 1) as busy:
        time.sleep(0.05)
        gpu.processes = [os.getpid(), 31337]  # someone else's job lands on the GPU
        time.sleep(0.1)
    sampler.stop()
    assert quiet.result.utilisation["gpu:0.other_processes"] == 0.0
    assert busy.result.utilisation["gpu:0.other_processes"] == 1.0
    assert shared_gpu_warning([quiet.result.utilisation]) is None
    warning = shared_gpu_warning([quiet.result.utilisation, busy.result.utilisation])
    assert warning is not None and "gpu:0 with up to 1" in warning
    assert "includes theirs" in warning
