"""Contention is recorded: other processes' CPU and the load average, per phase and per
run; a busy run is warned about, marked in the summary and can be left out of the report.
And the labels say what was measured and what was estimated."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from sweeper.app.summary import sweep_table
from sweeper.energy import EnergySampler
from sweeper.energy.contention import (
    LOAD_KEY,
    OTHER_CPU_KEY,
    Contention,
    ContentionProbe,
    busy_warning,
)
from sweeper.energy.estimate import EstimateMeter
from sweeper.energy.labels import describe_source
from sweeper.report.basis import apply_basis, drop_busy
from sweeper.store import runs as store_runs
from sweeper.store.db import Store
from tests.conftest import run_row


class Counters:
    """The machine's busy CPU seconds and ours, driven by the test, on a 2-core machine."""

    def __init__(self) -> None:
        self.t = self.machine = self.own = 0.0

    def advance(self, wall_s: float, own_s: float, other_s: float) -> None:
        self.t += wall_s
        self.own += own_s
        self.machine += own_s + other_s


def test_other_processes_cpu_excludes_our_own() -> None:
    c = Counters()
    probe = ContentionProbe(lambda: c.t, machine_busy_s=lambda: c.machine,
                            own_cpu_s=lambda: c.own)
    probe.cores = 2
    c.advance(1.0, own_s=1.0, other_s=0.0)  # we used one core: the machine is not busy
    assert probe.stats()[OTHER_CPU_KEY] == 0.0
    c.advance(1.0, own_s=1.0, other_s=1.0)  # someone else took the other core
    assert probe.stats()[OTHER_CPU_KEY] == 100.0 * 1.0 / 2.0
    total = probe.total()
    assert total.other_cpu_pct == 25.0 and total.cores == 2  # 1 of 4 core-seconds


def test_busy_warning_names_the_threshold() -> None:
    assert busy_warning(Contention(10.0, 0.5, 2), 25.0) is None
    text = busy_warning(Contention(60.0, 3.2, 2), 25.0)
    assert text is not None and "60%" in text and "3.2" in text
    assert "energy.busy_other_cpu_pct=25" in text


def test_sampler_puts_the_machine_load_into_each_phase() -> None:
    """The real probe beside a real meter: every phase long enough to be polled carries the
    other processes' CPU share and the load average, and the probe adds no energy domain."""
    probe = ContentionProbe()
    sampler = EnergySampler([EstimateMeter(), probe], sample_hz=50.0).start()
    with sampler.phase("train_epoch") as ph:
        time.sleep(0.2)
    summary = sampler.stop()
    assert ph.result is not None
    util = ph.result.utilisation
    assert 0.0 <= util[OTHER_CPU_KEY] <= 100.0 and util[LOAD_KEY] >= 0.0
    assert set(summary.by_domain) == {"cpu", "memory"}
    assert 0.0 <= (probe.total().other_cpu_pct or 0.0) <= 100.0


def test_summary_marks_busy_runs_and_says_what_was_measured(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    sweep_id = store_runs.ensure_sweep(store, "grid: x")
    for i, (source, busy, idle) in enumerate(
        [("nvml+estimate", True, 125.0), ("estimate", False, 0.0)]
    ):
        store_runs.insert_run(store, run_row(
            sweep_id, config_hash=str(i), status="completed", meter_source=source,
            machine_busy=busy, energy_train_j=900.0, energy_train_net_j=300.0,
            idle_power_w=idle,
        ))
    runs = store_runs.sweep_runs(store, sweep_id)
    console = Console(width=250, record=True)
    console.print(sweep_table("t", runs))
    text = console.export_text()
    assert "meter 'nvml+estimate': GPU energy measured by NVML" in text
    assert "CPU and memory energy estimated" in text
    assert "meter 'estimate': no NVML or RAPL readings here" in text
    assert "E_tr net" in text and "300.0 J" in text  # net beside gross when idle was measured
    assert "busy: run(s) 1 measured while other processes loaded the machine" in text
    store.dispose()


def test_describe_source_never_lets_one_meter_stand_for_all() -> None:
    assert "RAPL" in describe_source("nvml+rapl") and "NVML" in describe_source("nvml+rapl")
    assert "estimated" not in describe_source("nvml+rapl")
    assert "no NVML or RAPL" not in describe_source("nvml+estimate")


def test_report_basis_swaps_in_net_and_drops_busy_runs() -> None:
    runs = pd.DataFrame({
        "id": [1, 2, 3], "machine_busy": [True, False, None],
        "energy_train_j": [900.0, 800.0, 700.0], "energy_train_net_j": [300.0, None, 100.0],
        **{k: [1.0, 1.0, 1.0] for k in (
            "energy_inference_j", "energy_total_j", "energy_per_train_sample_j",
            "energy_per_inference_sample_j", "energy_inference_net_j", "energy_total_net_j",
            "energy_per_train_sample_net_j", "energy_per_inference_sample_net_j")},
    })
    net, note = apply_basis(runs, "net")
    assert list(net["energy_train_j"].fillna(-1)) == [300.0, -1, 100.0]
    assert list(net["energy_train_gross_j"]) == [900.0, 800.0, 700.0]
    assert "net of idle" in note and "1 run(s) have no idle baseline" in note
    gross, note = apply_basis(runs, "gross")
    assert "gross" in note and list(gross["energy_basis"]) == ["gross"] * 3
    pd.testing.assert_frame_equal(gross[list(runs.columns)], runs)  # the stored figures
    kept, note = drop_busy(runs)
    assert list(kept["id"]) == [2, 3] and note is not None and "1 run(s)" in note
