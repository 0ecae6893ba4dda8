"""The energy/meter config group: a new meter is one module plus one YAML file (issue 22).

The meter below lives only in a temporary folder, as a user's or a plugin's would: its module
on the import path, its YAML in a config folder on Hydra's search path (``--config-dir``, or
a copy of the package's conf). Nothing in the package changes, yet ``meter=<name>`` runs with
it and every `meter=` check accepts it.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from sweeper.energy import EnergySampler, open_meters
from sweeper.energy import select as select_module
from sweeper.energy.meter_group import names
from sweeper.energy.select import parse_choice
from tests.conftest import CONF_DIR, ROOT, TINY, run_cli

METER_MODULE = '''
"""A wall-power meter that reads a fixed power (a test's stand-in for a smart plug)."""

import time


class WallMeter:
    source = "wall"

    def __init__(self, watts: float, cpu_tdp_w: float | None = None) -> None:
        self.watts, self.cpu_tdp_w = watts, cpu_tdp_w
        self._t0 = time.perf_counter()

    @property
    def covers(self) -> str:
        return f"the plug, {self.watts:g} W"

    def read(self):
        from sweeper.energy.types import DomainReading

        elapsed_s = time.perf_counter() - self._t0
        return [DomainReading("wall", self.source, self.watts * elapsed_s, self.watts)]

    def describe(self) -> dict[str, str]:
        return {"wall_watts": f"{self.watts:g}"}

    def close(self) -> None:
        pass
'''

METER_YAML = """\
# meter=wall: the whole machine at the plug (a test meter).
_target_: wall_meter_for_tests.WallMeter
watts: 42.0
"""


@pytest.fixture
def wall_meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The new meter's two files: its module and its YAML; returns the config folder."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "wall_meter_for_tests.py").write_text(METER_MODULE)
    monkeypatch.syspath_prepend(str(code))
    group = tmp_path / "conf" / "energy" / "meter"
    group.mkdir(parents=True)
    (group / "wall.yaml").write_text(METER_YAML)
    return tmp_path / "conf"


@pytest.fixture
def copied_conf(wall_meter: Path, tmp_path: Path) -> Iterator[None]:
    """A running Hydra app on a copy of the package's conf with the new YAML added."""
    copy = tmp_path / "conf_copy"
    shutil.copytree(CONF_DIR, copy)
    shutil.copy(wall_meter / "energy" / "meter" / "wall.yaml", copy / "energy" / "meter")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(copy), version_base="1.3"):
        assert compose("config", overrides=["meter=wall"]).meter == "wall"
        yield
    GlobalHydra.instance().clear()


def test_the_package_group_names_todays_meters() -> None:
    assert names() == (("auto",), ("nvml", "rapl", "estimate"))
    assert select_module.CHOICES == ("auto", "nvml", "rapl", "estimate")
    assert select_module.SOURCES == ("nvml", "rapl", "estimate")
    assert parse_choice(" NVML + rapl") == ["nvml", "rapl"]
    with pytest.raises(ValueError, match="wall.*use one of auto, nvml, rapl, estimate"):
        parse_choice("wall")


def test_a_meter_on_the_search_path_is_a_choice_and_opens(copied_conf: None) -> None:
    assert "wall" in select_module.SOURCES and "wall" in select_module.CHOICES
    assert parse_choice("wall") == ["wall"]
    assert parse_choice("nvml+wall") == ["nvml", "wall"]
    with pytest.raises(ValueError, match="auto, nvml, rapl, estimate, wall"):
        parse_choice("plug")
    # The YAML's arguments and the run's values it names (cpu_tdp_w), instantiated by Hydra.
    meters = open_meters("wall+estimate", cpu_tdp_w=65.0)
    wall = meters.meters[0]
    assert (type(wall).__name__, wall.watts, wall.cpu_tdp_w) == ("WallMeter", 42.0, 65.0)
    assert meters.source == "estimate+wall" and meters.notes[0] == "wall: requested"
    with EnergySampler(meters) as sampler:
        pass
    summary = sampler.stop()
    assert set(summary.by_domain) == {"wall", "cpu", "memory"}
    assert summary.by_domain["wall"] > 0


@pytest.mark.slow
def test_meter_equals_a_new_meter_runs_through_the_cli(wall_meter: Path, tmp_path: Path) -> None:
    """`meter=wall` with the meter's folder on Hydra's search path: a real run stores it."""
    db = tmp_path / "r.db"
    done = run_cli(["--config-dir", str(wall_meter), *TINY, "device=cpu", "meter=wall",
                    f"storage.url=sqlite:///{db}"],
                   tmp_path, env={"PYTHONPATH": f"{ROOT}:{wall_meter.parent / 'code'}"})
    assert done.returncode == 0, done.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        source, energy_j = conn.execute(
            "select meter_source, energy_train_j from runs").fetchone()
    assert source == "wall" and energy_j > 0
