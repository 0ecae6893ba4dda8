"""EnergySampler with deterministic fake meters of known constant power."""

from __future__ import annotations

import time

import psutil
import pytest

from sweeper.energy import EnergySampler, source_label
from sweeper.energy.series import next_poll_s
from sweeper.energy.types import DomainReading, MeterReadError, Sample


class ConstantPower:
    """Cumulative energy = power x time since opening, like a perfect hardware counter."""

    def __init__(self, power_w: float, domain: str = "package-0", source: str = "rapl") -> None:
        self.power_w = power_w
        self.domain = domain
        self.source = source
        self.t0 = time.perf_counter()
        self.reads = 0

    def read(self) -> list[DomainReading]:
        self.reads += 1
        return [
            DomainReading(self.domain, self.source, self.power_w * (time.perf_counter() - self.t0))
        ]

    def describe(self) -> dict[str, str]:
        return {"kind": f"constant {self.power_w} W"}

    def close(self) -> None:
        pass


class BreaksAfter(ConstantPower):
    """Reads fine until ``break_at`` seconds after opening, then raises on every read."""

    def __init__(self, power_w: float, break_at_s: float, domain: str = "gpu:0") -> None:
        super().__init__(power_w, domain, "nvml")
        self.break_at_s = break_at_s

    def read(self) -> list[DomainReading]:
        if time.perf_counter() - self.t0 > self.break_at_s:
            raise MeterReadError("NVML read of GPU 0 failed: GPU is lost")
        return super().read()


class WithStats(ConstantPower):
    """A GPU-like meter whose stats() cycle through known values, remembering each call."""

    UTIL = (20.0, 60.0, 90.0)
    MEMORY = (900.0, 1500.0, 1200.0, 300.0)

    def __init__(self) -> None:
        super().__init__(200.0, "gpu:0", "nvml")
        self.calls: list[dict[str, float]] = []

    def stats(self) -> dict[str, float]:
        n = len(self.calls)
        got = {
            "gpu:0.util_pct": self.UTIL[n % 3],
            "gpu:0.memory_used_mib": self.MEMORY[n % 4],
        }
        self.calls.append(got)
        return got


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_phase_utilisation_is_mean_util_and_peak_memory() -> None:
    meter = WithStats()
    sampler = EnergySampler([meter], sample_hz=100).start()
    time.sleep(0.05)  # polls outside phases do not ask for stats
    assert meter.calls == []
    with sampler.phase("train_epoch") as busy:
        _busy(0.15)
    n_first = len(meter.calls)
    with sampler.phase("eval") as idle:
        time.sleep(0.15)
    sampler.stop()

    assert n_first >= 3 and len(meter.calls) > n_first
    for ph, calls in ((busy, meter.calls[:n_first]), (idle, meter.calls[n_first:])):
        u = ph.result.utilisation
        assert u["gpu:0.util_pct"] == pytest.approx(sum(c["gpu:0.util_pct"] for c in calls)
                                                   / len(calls))
        assert u["gpu:0.memory_used_mib"] == max(c["gpu:0.memory_used_mib"] for c in calls)
    assert busy.result.utilisation["gpu:0.memory_used_mib"] == 1500.0
    # CPU: a busy loop keeps one of the machine's cores busy, a sleep keeps none
    cores = psutil.cpu_count(logical=True) or 1
    cpu_busy = busy.result.utilisation["process.cpu_util_pct"]
    cpu_idle = idle.result.utilisation["process.cpu_util_pct"]
    assert 0.3 * 100 / cores <= cpu_busy <= 100
    assert 0 <= cpu_idle < cpu_busy


def test_stats_are_never_read_at_phase_boundaries() -> None:
    meter = WithStats()
    sampler = EnergySampler([meter, ConstantPower(5.0)], sample_hz=1).start()
    with sampler.phase("eval") as ph:
        time.sleep(0.05)  # shorter than the sampling period: no background poll inside
    sampler.stop()
    assert meter.calls == []
    assert set(ph.result.utilisation) == {"process.cpu_util_pct"}  # CPU works for any meter


def test_phases_add_up_to_the_run_total() -> None:
    sampler = EnergySampler([ConstantPower(100.0), ConstantPower(20.0, "dram-0")], 20).start()
    results = []
    for i, kind in enumerate(["train_epoch", "eval", "train_epoch", "inference"]):
        with sampler.phase(kind, i) as ph:
            time.sleep(0.2)
        results.append(ph.result)
    summary = sampler.stop()
    phases_j = sum(p.energy_j for p in results)
    assert phases_j == pytest.approx(summary.energy_j, rel=0.01)
    # conservation: what the phases miss is exactly the time between them (scheduling gaps)
    phases_s = sum(p.duration_s for p in results)
    gaps_j = 120.0 * (summary.duration_s - phases_s)
    assert phases_j + gaps_j == pytest.approx(summary.energy_j, rel=0.002)
    assert summary.by_domain["package-0"] == pytest.approx(100.0 * summary.duration_s, rel=0.01)
    assert summary.mean_power_w == pytest.approx(120.0, rel=0.01)
    assert summary.peak_power_w == pytest.approx(120.0, rel=0.05)
    for p in results:
        assert p.energy_j == pytest.approx(120.0 * p.duration_s, rel=0.005)
        assert p.by_domain["dram-0"] == pytest.approx(20.0 * p.duration_s, rel=0.005)
        assert p.sources == {"package-0": "rapl", "dram-0": "rapl"} and p.source == "rapl"
    assert [p.kind for p in sampler.phases] == [p.kind for p in results]
    assert summary.hardware["rapl.kind"] == "constant 100.0 W"
    assert summary.hardware["rapl#2.kind"] == "constant 20.0 W"


@pytest.mark.parametrize("sample_hz", [1.0, 200.0])
def test_phase_energy_does_not_depend_on_sample_rate(sample_hz: float) -> None:
    sampler = EnergySampler([ConstantPower(50.0)], sample_hz=sample_hz).start()
    time.sleep(0.03)
    with sampler.phase("train_epoch") as ph:
        time.sleep(0.2)
    sampler.stop()
    # one sample per second at 1 Hz never falls inside the phase; the result is still exact
    assert ph.result.energy_j == pytest.approx(50.0 * ph.result.duration_s, rel=0.002)
    assert ph.result.duration_s == pytest.approx(0.2, abs=0.05)


def test_meter_failing_mid_run_gives_warnings_not_a_crash() -> None:
    good, bad = ConstantPower(100.0), BreaksAfter(300.0, break_at_s=0.1)
    sampler = EnergySampler([good, bad], sample_hz=50).start()
    with sampler.phase("train_epoch") as first:
        time.sleep(0.05)
    with sampler.phase("train_epoch", 1) as second:  # the GPU breaks during this phase
        time.sleep(0.15)
    so_far_j = sampler.energy_so_far_j()
    summary = sampler.stop()

    assert first.result.by_domain["gpu:0"] == pytest.approx(300 * first.result.duration_s, 0.01)
    lost = second.result.by_domain["gpu:0"]
    assert 0 < lost < 300 * second.result.duration_s * 0.9  # kept what was measured
    assert second.result.by_domain["package-0"] == pytest.approx(
        100 * second.result.duration_s, rel=0.01
    )
    # the GPU's total is frozen at its last good reading, around 0.1 s x 300 W
    assert summary.by_domain["gpu:0"] == pytest.approx(30.0, rel=0.25)
    assert summary.by_domain["package-0"] == pytest.approx(100 * summary.duration_s, rel=0.01)
    assert so_far_j <= summary.energy_j
    assert len(summary.warnings) == 1
    assert "nvml meter failed" in summary.warnings[0]
    assert "GPU is lost" in summary.warnings[0] and "last good value" in summary.warnings[0]
    assert summary.source == "nvml+rapl"


def test_meter_broken_from_the_start_still_summarises() -> None:
    sampler = EnergySampler([ConstantPower(10.0), BreaksAfter(1.0, break_at_s=-1)], 20)
    sampler.start()
    time.sleep(0.05)
    summary = sampler.stop()
    assert set(summary.by_domain) == {"package-0"}
    assert "never read" in summary.warnings[0]


def test_on_samples_gets_batches_and_a_final_flush() -> None:
    batches: list[list[Sample]] = []
    meters = [ConstantPower(100.0), ConstantPower(5.0, "memory", "estimate")]
    sampler = EnergySampler(meters, sample_hz=50, on_samples=batches.append, flush_every=4)
    sampler.start()
    time.sleep(0.4)
    summary = sampler.stop()

    assert len(batches) >= 3
    assert all(len(b) == 4 * 2 for b in batches[:-1])  # 4 polls x 2 domains
    assert 0 < len(batches[-1]) <= 4 * 2
    samples = [s for b in batches for s in b]
    by_domain: dict[str, list[Sample]] = {}
    for s in samples:
        by_domain.setdefault(s.domain, []).append(s)
    assert set(by_domain) == {"package-0", "memory"}
    for domain, series in by_domain.items():
        times = [s.t_s for s in series]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert [s.energy_j for s in series] == sorted(s.energy_j for s in series)
        assert series[-1].energy_j == summary.by_domain[domain]
    series = by_domain["package-0"]
    rated = [s for s in series[1:] if s.power_w is not None]
    assert len(rated) >= len(series) // 2
    for s in rated:
        assert s.power_w == pytest.approx(100.0, rel=0.05)  # from energy deltas / dt
    # A poll that lands less than half a period after the one before (the poll at stop, or an
    # on-schedule poll right after a late one on a loaded machine) carries energy but no rate.
    for prev, s in zip(series, series[1:], strict=False):
        if s.power_w is None:
            assert s.t_s - prev.t_s < 0.5 / 50
    assert all(s.source == "rapl" for s in series)
    assert 10 <= len(by_domain["package-0"]) <= 25  # ~50 Hz for 0.4 s
    assert summary.source == "rapl+estimate"


def test_on_samples_exception_is_a_warning() -> None:
    def broken(batch: list[Sample]) -> None:
        raise OSError("database is locked")

    sampler = EnergySampler([ConstantPower(1.0)], 100, on_samples=broken, flush_every=2).start()
    time.sleep(0.1)
    summary = sampler.stop()
    assert summary.energy_j > 0
    assert any("on_samples failed" in w and "database is locked" in w for w in summary.warnings)


def test_phase_api_misuse_and_open_phase_at_stop() -> None:
    sampler = EnergySampler([ConstantPower(1.0)])
    with pytest.raises(RuntimeError, match="not started"):
        sampler.begin_phase("train_epoch")
    sampler.start()
    with pytest.raises(RuntimeError, match="no phase is open"):
        sampler.end_phase()
    sampler.begin_phase("train_epoch", 3)
    with pytest.raises(RuntimeError, match=r"train_epoch\[3\] is still open"):
        sampler.begin_phase("eval")
    summary = sampler.stop()
    assert any("still open" in w for w in summary.warnings)
    assert [(p.kind, p.index) for p in sampler.phases] == [("train_epoch", 3)]
    assert sampler.stop() is summary


def test_phase_result_is_recorded_when_the_block_raises() -> None:
    sampler = EnergySampler([ConstantPower(10.0)]).start()
    with pytest.raises(KeyError), sampler.phase("eval") as ph:
        time.sleep(0.02)
        raise KeyError("boom")
    sampler.stop()
    assert ph.result is not None and ph.result.energy_j > 0


def test_energy_so_far_is_exact_now() -> None:
    sampler = EnergySampler([ConstantPower(1000.0)], sample_hz=1)
    t_start0 = time.perf_counter()
    sampler.start()
    t_start1 = time.perf_counter()
    time.sleep(0.1)  # no background sample yet at 1 Hz
    t_read0 = time.perf_counter()
    e_j = sampler.energy_so_far_j()
    t_read1 = time.perf_counter()
    sampler.stop()
    assert 1000.0 * (t_read0 - t_start1) <= e_j <= 1000.0 * (t_read1 - t_start0)


def test_source_label_never_hides_an_estimate() -> None:
    assert source_label(["estimate", "nvml"]) == "nvml+estimate"
    assert source_label(["rapl", "nvml", "rapl"]) == "nvml+rapl"
    assert source_label(["estimate"]) == "estimate"
    assert source_label([]) == "none"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        EnergySampler([ConstantPower(1.0)], sample_hz=0)
    with pytest.raises(ValueError):
        EnergySampler([])


def test_sampler_thread_is_cheap() -> None:
    """At 100 Hz the thread should use well under 5% of one core with a cheap meter."""
    sampler = EnergySampler([ConstantPower(1.0)], sample_hz=100).start()
    time.sleep(0.5)
    thread_cpu_s = sampler.thread_cpu_s
    summary = sampler.stop()
    assert len(summary.by_domain) == 1
    assert 0 < thread_cpu_s < 0.05 * 0.5


class SteppedEnergy:
    """Energy that jumps when the test says so, as a coarse counter (CPU-time ticks) does."""

    source = "estimate"

    def __init__(self) -> None:
        self.energy_j = 0.0

    def read(self) -> list[DomainReading]:
        return [DomainReading("cpu", self.source, self.energy_j, None)]

    def describe(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def test_no_power_spike_from_a_rate_over_a_tiny_interval() -> None:
    # A counter step seen over a sliver of the sampling period (here the poll at stop, 20 ms
    # into a 2 s period) is the counter's resolution, not power: 10 J / 20 ms would be 500 W.
    meter = SteppedEnergy()
    samples: list[Sample] = []
    sampler = EnergySampler([meter], sample_hz=0.5, on_samples=samples.extend)
    sampler.start()
    time.sleep(0.02)
    meter.energy_j = 10.0
    summary = sampler.stop()
    assert [s.power_w for s in samples] == [None]
    assert summary.peak_power_w is None
    assert samples[-1].energy_j == pytest.approx(10.0) == pytest.approx(summary.energy_j)


def test_polls_keep_their_rate_but_a_late_one_never_brings_the_next_within_half_a_period() -> None:
    assert next_poll_s(1.0, 1.0, 0.1) == pytest.approx(1.1)  # on time
    assert next_poll_s(1.0, 1.04, 0.1) == pytest.approx(1.1)  # a little late: keeps the grid
    assert next_poll_s(1.0, 1.07, 0.1) == pytest.approx(1.17)  # late: skips rather than slivers
    assert next_poll_s(1.0, 5.0, 0.1) == pytest.approx(5.1)  # suspended: no burst of polls


def test_on_a_loaded_machine_only_the_poll_at_stop_may_lack_a_rate() -> None:
    batches: list[list[Sample]] = []

    def slow_sometimes(batch: list[Sample]) -> None:
        """Every third flush takes 1.7 periods, so the next poll starts 0.7 of a period late."""
        batches.append(batch)
        if len(batches) % 3 == 0:
            time.sleep(1.7 * 0.02)

    sampler = EnergySampler(
        [ConstantPower(50.0)], sample_hz=50, on_samples=slow_sometimes, flush_every=1
    )
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    series = [s for b in batches for s in b]
    assert len(series) >= 10
    for s in series[1:-1]:
        assert s.power_w == pytest.approx(50.0, rel=0.1)
