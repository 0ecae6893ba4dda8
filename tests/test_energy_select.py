"""open_meters: the auto fallbacks, explicit choices, and the combined source label."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.energy import EnergySampler, open_meters
from sweeper.errors import MeterUnavailable
from tests.conftest import deny_read
from tests.fake_nvml import FakeGpu, FakeNvml, NVMLError


def one_gpu(broken: bool = False) -> FakeNvml:
    """One GPU with an energy counter; ``broken`` is a machine without a driver."""
    if broken:
        return FakeNvml([], init_error=NVMLError("NVML Shared Library Not Found"))
    return FakeNvml([FakeGpu("NVIDIA H100", counter_mj=0.0, enforced_limit_mw=700_000)])


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    pkg = tmp_path / "intel-rapl:0"
    for zone_dir, name in ((pkg, "package-0"), (pkg / "intel-rapl:0:0", "dram")):
        zone_dir.mkdir(parents=True)
        (zone_dir / "name").write_text(name)
        (zone_dir / "energy_uj").write_text("1000")
        (zone_dir / "max_energy_range_uj").write_text("262143328850")
    return tmp_path


@pytest.fixture
def unreadable_powercap(powercap: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = powercap / "intel-rapl:0" / "energy_uj"
    deny_read(target, monkeypatch)
    return powercap


def test_auto_prefers_nvml_and_rapl(powercap: Path) -> None:
    meters = open_meters(powercap_root=powercap, nvml=one_gpu())
    assert [m.source for m in meters] == ["nvml", "rapl"]
    assert meters.source == "nvml+rapl"
    assert meters.notes[0].startswith("nvml: GPUs [0]")
    assert meters.notes[1] == "rapl: package-0, dram-0"
    assert meters.describe()["nvml.gpu:0.name"] == "NVIDIA H100"
    summary = EnergySampler(meters).start().stop()
    assert set(summary.by_domain) == {"gpu:0", "package-0", "dram-0"}
    assert summary.source == "nvml+rapl" and "meter_selection" in summary.hardware
    meters.close()


def test_auto_falls_back_to_estimate_and_says_why(unreadable_powercap: Path) -> None:
    meters = open_meters(powercap_root=unreadable_powercap, nvml=one_gpu(broken=True))
    assert [m.source for m in meters] == ["estimate"]
    assert meters.source == "estimate"
    notes = " | ".join(meters.notes)
    assert "nvml: not used" in notes and "Shared Library Not Found" in notes
    assert "rapl: not used" in notes and "chmod a+r" in notes
    assert "estimate: cpu+memory" in notes


def test_auto_gpu_with_estimate_keeps_the_estimate_visible(tmp_path: Path) -> None:
    meters = open_meters(powercap_root=tmp_path / "none", nvml=one_gpu(), cpu_tdp_w=65)
    assert meters.source == "nvml+estimate"
    assert meters.meters[1].cpu_tdp_w == 65


def test_auto_gpu_run_whose_nvml_fails_warns_that_the_gpu_was_not_measured(
    powercap: Path,
) -> None:
    meters = open_meters(gpu_indices=(0,), powercap_root=powercap, nvml=one_gpu(broken=True))
    assert meters.source == "rapl"  # what was measured: the CPU only
    (warning,) = meters.warnings
    assert warning.startswith("GPU energy not measured: NVML unavailable")
    assert "Shared Library Not Found" in warning
    assert open_meters(gpu_indices=(0,), powercap_root=powercap, nvml=one_gpu()).warnings == []
    assert open_meters(gpu_indices=(), powercap_root=powercap, nvml=one_gpu()).warnings == []


def test_auto_with_no_gpus_requested_does_not_touch_nvml(powercap: Path) -> None:
    class Exploding(FakeNvml):
        def nvmlInit(self) -> None:
            raise AssertionError("NVML must not be started for a CPU run")

    meters = open_meters(gpu_indices=(), powercap_root=powercap, nvml=Exploding([]))
    assert meters.source == "rapl"
    assert "no GPU requested" in meters.notes[0]


def test_explicit_choices_fail_loudly(tmp_path: Path, unreadable_powercap: Path) -> None:
    with pytest.raises(MeterUnavailable, match="'nvml' was requested.*Library Not Found"):
        open_meters("nvml", nvml=one_gpu(broken=True))
    with pytest.raises(MeterUnavailable, match="'rapl' was requested.*no RAPL package zones"):
        open_meters("rapl", powercap_root=tmp_path / "none")
    with pytest.raises(MeterUnavailable, match=r"chmod a\+r"):
        open_meters("rapl", powercap_root=unreadable_powercap)
    assert open_meters("nvml", nvml=one_gpu()).source == "nvml"
    assert open_meters("estimate").source == "estimate"


def test_combined_choice(powercap: Path) -> None:
    meters = open_meters("nvml+rapl", powercap_root=powercap, nvml=one_gpu())
    assert meters.source == "nvml+rapl"
    assert open_meters("rapl+estimate", powercap_root=powercap).source == "rapl+estimate"


@pytest.mark.parametrize("choice", ["gpu", "", "auto+rapl", "rapl+rapl", "NVML+"])
def test_unknown_choice_names_the_allowed_values(choice: str) -> None:
    with pytest.raises(ValueError, match="auto, nvml, rapl, estimate"):
        open_meters(choice)
