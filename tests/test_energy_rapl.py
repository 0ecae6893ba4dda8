"""RAPL meter against a fake powercap tree: discovery, wraparound, permissions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeper.energy.rapl import RaplMeter, counter_delta_uj
from sweeper.energy.types import MeterReadError
from sweeper.errors import MeterUnavailable
from tests.conftest import deny_read

MAX_UJ = 262_143_328_850  # a typical Intel package range


def zone(path: Path, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def set_uj(path: Path, energy_uj: int) -> None:
    (path / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """Two packages, each with a DRAM subzone, plus zones that must not be counted."""
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl").mkdir()  # the control type itself: no counters
    p0 = zone(root / "intel-rapl:0", "package-0", 1_000_000)
    core0 = zone(p0 / "intel-rapl:0:0", "core", 500_000)
    d0 = zone(p0 / "intel-rapl:0:1", "dram", 2_000_000, max_uj=65_532_610_987)
    p1 = zone(root / "intel-rapl:1", "package-1", 3_000_000)
    d1 = zone(p1 / "intel-rapl:1:0", "dram", 4_000_000, max_uj=65_532_610_987)
    zone(root / "intel-rapl:2", "psys", 9_000_000)  # platform: contains the packages
    return {"root": root, "p0": p0, "core0": core0, "d0": d0, "p1": p1, "d1": d1}


def energies(meter: RaplMeter) -> dict[str, float]:
    return {r.domain: r.energy_j for r in meter.read()}


def test_discovers_packages_and_dram_only(tree: dict[str, Path]) -> None:
    meter = RaplMeter(tree["root"])
    assert meter.domains == ["package-0", "dram-0", "package-1", "dram-1"]
    assert energies(meter) == {"package-0": 0, "dram-0": 0, "package-1": 0, "dram-1": 0}
    info = meter.describe()
    assert info["rapl_domains"] == "package-0,dram-0,package-1,dram-1"
    assert "intel-rapl:0:0=core" in info["rapl_not_measured"]
    assert "intel-rapl:2=psys" in info["rapl_not_measured"]
    assert all(r.source == "rapl" for r in meter.read())


def test_cumulative_joules_across_reads(tree: dict[str, Path]) -> None:
    meter = RaplMeter(tree["root"])
    set_uj(tree["p0"], 11_000_000)  # +10 J
    set_uj(tree["d1"], 4_500_000)  # +0.5 J
    set_uj(tree["core0"], 99_000_000)  # not measured: must not leak into package-0
    e = energies(meter)
    assert e["package-0"] == pytest.approx(10.0)
    assert e["dram-1"] == pytest.approx(0.5)
    assert e["package-1"] == 0 and e["dram-0"] == 0
    set_uj(tree["p0"], 16_000_000)  # +5 J more
    assert energies(meter)["package-0"] == pytest.approx(15.0)


def test_wraparound_between_reads(tree: dict[str, Path]) -> None:
    set_uj(tree["p1"], MAX_UJ - 1_000_000)  # 1 J before the wrap
    meter = RaplMeter(tree["root"])
    set_uj(tree["p1"], 2_000_000)  # wrapped, then 2 J more
    # +1 uJ: the counter takes values 0..MAX_UJ inclusive
    assert energies(meter)["package-1"] == pytest.approx(3.000001, abs=1e-9)
    set_uj(tree["p1"], 3_000_000)
    assert energies(meter)["package-1"] == pytest.approx(4.000001, abs=1e-9)


def test_unreadable_counter_names_the_fix(
    tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tree["d1"] / "energy_uj"
    deny_read(target, monkeypatch)
    with pytest.raises(MeterUnavailable) as err:
        RaplMeter(tree["root"])
    message = str(err.value)
    assert str(target) in message
    assert "sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj" in message
    assert "udev" in message and "root" in message and "CVE-2020-8694" in message


def test_no_zones_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match="no RAPL package zones"):
        RaplMeter(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeterUnavailable, match="no RAPL package zones"):
        RaplMeter(tmp_path / "empty")


def test_amd_style_zone_names_and_duplicate_package_names(tmp_path: Path) -> None:
    zone(tmp_path / "amd-rapl:0", "package-0", 10)
    zone(tmp_path / "amd-rapl:1", "package-0", 10)  # seen on some AMD kernels
    meter = RaplMeter(tmp_path)
    assert meter.domains == ["package-0", "package-1"]
    set_uj(tmp_path / "amd-rapl:1", 2_000_010)
    assert energies(meter) == {"package-0": 0.0, "package-1": pytest.approx(2.0)}


def test_counter_vanishing_mid_run_raises_read_error(tree: dict[str, Path]) -> None:
    meter = RaplMeter(tree["root"])
    (tree["d0"] / "energy_uj").unlink()
    with pytest.raises(MeterReadError, match="dram|intel-rapl:0:1"):
        meter.read()


def test_counter_delta_examples() -> None:
    assert counter_delta_uj(100, 250, 1000) == 150
    assert counter_delta_uj(900, 100, 1000) == 201  # 900..1000 is 100, 1000->0 is 1, 0..100
    assert counter_delta_uj(5, 5, 1000) == 0
    with pytest.raises(ValueError):
        counter_delta_uj(10, 5, 0)


@given(
    max_range=st.integers(min_value=1, max_value=2**63),
    prev_frac=st.floats(min_value=0, max_value=1),
    delta_frac=st.floats(min_value=0, max_value=1),
)
def test_counter_delta_recovers_any_single_wrap(
    max_range: int, prev_frac: float, delta_frac: float
) -> None:
    prev = min(max_range, int(prev_frac * max_range))
    true_delta = min(max_range, int(delta_frac * max_range))
    cur = (prev + true_delta) % (max_range + 1)
    assert counter_delta_uj(prev, cur, max_range) == true_delta
