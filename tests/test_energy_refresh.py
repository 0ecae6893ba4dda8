"""Refresh-aware NVML phases on the emulated H200: the learned refresh grid, accuracy against
the exact integral, uncertainty, the instant-power fallback and impossible figures.

Every case runs a real NvmlMeter and EnergySampler on a simulated clock (deterministic, no
sleeping) except the one that checks the background thread on the real clock.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest

from sweeper.energy import EnergySampler
from sweeper.energy.nvml import NvmlMeter
from tests.fake_nvml import (
    Clock,
    EmulatedGpu,
    FakeNvml,
    PhaseScore,
    PowerSignal,
    drive,
    emulated_h200,
    epoch_session,
    h200_session,
    measure_boundaries,
    measure_phases,
    measure_session,
    measure_work_phases,
    work_session,
)

# ------------------------------------------------------------------------------ the fake


def test_emulated_h200_changes_only_at_refreshes_and_power_is_a_1s_mean() -> None:
    clock = Clock()
    nvml, gpu, session = emulated_h200(clock)
    lo, _ = session.stretches["heavy"]
    refreshes = [t for t in gpu.counter_refresh_s if lo + 0.5 < t < lo + 1.5]
    gaps_ms = sorted(1000 * (b - a) for a, b in zip(refreshes, refreshes[1:], strict=False))
    assert gaps_ms[0] > 96 and gaps_ms[-1] < 104 and statistics.median(gaps_ms) == (
        pytest.approx(100.0, abs=0.7)
    )
    t1, t2 = refreshes[3], refreshes[4]
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    values = []
    for frac in (0.01, 0.5, 0.99):
        clock.t = t1 + frac * (t2 - t1)
        values.append(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    assert len(set(values)) == 1  # constant between refreshes
    clock.t = t2 + 1e-6
    step_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - values[0]
    assert step_mj == pytest.approx(1000 * (gpu.energy_j(t2) - gpu.energy_j(t1)), abs=1.0)
    # GetPowerUsage trails: 0.3 s into the heavy load its 1 s mean is far below the load.
    clock.t = lo + 0.45
    assert nvml.nvmlDeviceGetPowerUsage(handle) < 0.6 * 690_000
    (field,) = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
    assert field.nvmlReturn == 0 and field.value.uiVal > 650_000  # the instant field does not


def test_the_emulated_power_field_refreshes_as_the_recorded_one_does_not_on_a_grid() -> None:
    """The recording's instant field refreshes 101.4 +- 3.2 ms apart, each gap independent
    of the last, so its phase against the counter's grid wanders; the emulated field does
    the same (a fake with the field on a steady grid made its samples look better timed
    than the real card's)."""
    from tests.fake_nvml import load_recording

    changed = load_recording().field_refreshes_s()
    real_ms = [1000 * (b - a) for a, b in zip(changed, changed[1:], strict=False)
               if b - a < 0.150]
    _, gpu, session = emulated_h200(Clock())
    times = [t for t in gpu.power_refresh_s if session.signal.times_s[0] < t]
    emulated_ms = [1000 * (b - a) for a, b in zip(times, times[1:], strict=False)]
    assert statistics.fmean(emulated_ms) == pytest.approx(statistics.fmean(real_ms), abs=0.6)
    assert statistics.pstdev(emulated_ms) == pytest.approx(statistics.pstdev(real_ms), rel=0.25)
    assert abs(statistics.correlation(emulated_ms[:-1], emulated_ms[1:])) < 0.2
    # no grid: over 45 s (450 refreshes), the field drifts against a 100 ms grid by tens of ms
    t0 = times[0]
    offsets_ms = [1000 * (t - t0 - 0.1 * round((t - t0) / 0.1)) for t in times[:450]]
    assert max(offsets_ms) - min(offsets_ms) > 40


def test_an_instant_sample_older_than_a_period_does_not_count_as_the_phase_s_power() -> None:
    """A sample read 105 ms after a phase began may still show the field's refresh from
    before the phase (the H200's field refreshes up to 124.5 ms apart): at 124 W in a 690 W
    phase, it said the phase's power varied by 566 W, and widened the phase's end fivefold
    (+-3.9 J against +-0.8 J)."""
    decay_j = 0.01 * (450 + 300 + 200)
    levels = [124, 124, 124, (0.02 * 124 + 0.08 * 690) / 0.1, 690, 690,
              (0.02 * 690 + decay_j + 0.05 * 124) / 0.1, 124, 124, 124]

    def end_uncertainty_j(stale: bool) -> float:
        timeline = _timeline(levels)
        timeline.mark(10.32, "begin")
        timeline.mark(10.62, "end")
        if stale:  # read at 10.425, the field's value from 10.315: the gap before the phase
            timeline.observe_power(10.425, 124.0)
        timeline.observe_power(10.56, 690.0)
        end = timeline.energy_at(10.62, final=True)
        assert end is not None
        return end.uncertainty_j

    assert end_uncertainty_j(stale=True) == pytest.approx(end_uncertainty_j(stale=False))


@pytest.mark.parametrize(("period_s", "field_period_s"), [(0.1, None), (0.025, 0.1),
                                                        (0.05, 0.02)])
def test_the_instant_field_s_pace_is_learned_apart_from_the_counter_s(
    period_s: float, field_period_s: float | None
) -> None:
    """How old a sample's value may be is the field's own refresh gap, which the counter's
    period need not be; the dense reads that learn it stop once it is known."""
    meter, calls = _read_for(1.5, 1.0, period_s=period_s, field_period_s=field_period_s)
    info = meter.describe()
    assert float(info["gpu:0.refresh_period_ms"]) == pytest.approx(1000 * period_s, rel=0.01)
    # the emulated field's gaps are the recording's (101.4 ms on average), scaled to its pace
    expected_ms = 1000 * (field_period_s or period_s) * 1.014
    assert float(info["gpu:0.field_period_ms"]) == pytest.approx(expected_ms, rel=0.05)
    assert calls < 2.0 * (4 / period_s + 3 * 10)  # no more field reads once learned


@pytest.mark.parametrize("offset_s", [0.01, 10.0, 20.0])
def test_the_field_s_pace_is_learned_from_the_real_recording(offset_s: float) -> None:
    """Replaying the real H200 (its polls every ~4 ms), the field's pace comes out as the
    recording's ~100 ms, idle stretches whose field repeated its value for 200-560 ms
    included."""
    from tests.fake_nvml import RecordedGpu, load_recording

    recording = load_recording()
    clock = Clock(recording.t_s[0] + offset_s)
    meter = NvmlMeter(nvml=FakeNvml([RecordedGpu(recording, clock)]), clock=clock)
    sampler = EnergySampler([meter], clock=clock, background=False).start()
    drive(sampler, clock, clock.t + 3.0)
    sampler.stop()
    assert float(meter.describe()["gpu:0.field_period_ms"]) == pytest.approx(101.4, abs=4.0)


def test_a_sample_as_old_as_the_field_s_gap_does_not_count_on_a_fast_counter() -> None:
    """A card whose counter refreshes every 25 ms but whose field refreshes every 100 ms
    shows samples up to 125 ms old: one read 80 ms into a 690 W phase can show the 124 W
    before it. Counted (by the counter's period, 31 ms), it said the power varied by 566 W
    beside the phase's end and widened it fourfold (+-3.1 J against +-0.8 J); with the
    field's pace learned it is not counted."""
    def power_w(t_s: float) -> float:
        if 10.31 <= t_s < 10.43:
            return 690.0
        if 10.43 <= t_s < 10.46:
            return (450.0, 300.0, 200.0)[int((t_s - 10.43) / 0.01)]
        return 124.0

    levels = [statistics.fmean(power_w(10.0 + 0.025 * k + 0.0001 * (i + 0.5))
                               for i in range(250)) for k in range(32)]

    def end_uncertainty_j(stale: bool, learn_field: bool) -> float:
        timeline = _timeline(levels, period_s=0.025)
        if learn_field:  # dense reads of a field that refreshes every 100 ms
            for i in range(400):
                t_s = 9.0 + 0.002 * i
                timeline.observe_field(t_s, 124.0 + int((t_s - 8.95) / 0.1) % 2)
            assert timeline.field_period_s == pytest.approx(0.1, abs=0.003)
        timeline.mark(10.31, "begin")
        timeline.mark(10.43, "end")
        if stale:  # read at 10.39, the field's value from 10.30: the gap before the phase
            timeline.observe_power(10.39, 124.0)
        end = timeline.energy_at(10.43, final=True)
        assert end is not None
        return end.uncertainty_j

    assert end_uncertainty_j(stale=True, learn_field=True) == pytest.approx(
        end_uncertainty_j(stale=False, learn_field=True))
    assert end_uncertainty_j(stale=True, learn_field=False) > 1.5 * end_uncertainty_j(
        stale=False, learn_field=False)


def test_a_refresh_the_model_misses_by_far_widens_every_piece_by_its_share() -> None:
    """Heavy work capped from 780 to 690 W 10 ms before a refresh, no sample after the
    step: the refresh before the phase's end says 771 W, which its last 78 ms did not
    draw, and the refresh of the end falls 6 J short of the levels, far beyond what they
    allow. Before, the end was stated +-2.7 J and missed by 5.9 J; now each piece may
    hold its length's share of the miss."""
    def power_w(t_s: float) -> float:
        if 10.02 <= t_s < 10.29:
            return 780.0
        if 10.29 <= t_s < 10.378:
            return 690.0
        if 10.378 <= t_s < 10.408:
            return (450.0, 300.0, 200.0)[min(int((t_s - 10.378) / 0.01), 2)]
        return 124.0

    def energy_j(a_s: float, b_s: float) -> float:
        return sum(power_w(a_s + (b_s - a_s) * (i + 0.5) / 4000) for i in range(4000)) * (
            b_s - a_s) / 4000

    timeline = _timeline([energy_j(9.5 + 0.1 * k, 9.6 + 0.1 * k) / 0.1 for k in range(14)],
                         t0_s=9.5)
    timeline.mark(10.02, "begin")
    timeline.mark(10.378, "end")
    timeline.observe_power(10.25, 780.0)  # the one sample in the phase: before the step
    end = timeline.energy_at(10.378, final=True)
    assert end is not None
    error_j = end.energy_j - energy_j(9.5, 10.378)
    assert abs(error_j) <= end.uncertainty_j
    assert end.uncertainty_j < 0.8 * 0.078 * 780  # not the whole last piece


def test_where_a_phase_s_work_stopped_is_a_prior_when_no_clean_sample_saw_it() -> None:
    """A 75 ms phase that begins in one refresh and ends in the next: no instant sample can
    have seen its work alone (its field value may be 125 ms old), so the decay after it
    starts anywhere from the gap's power to twice the work's mean above it, whatever an
    instant sample read inside it shows. Before, no sample stated that start exact (+-2.9 J)
    and a stale one at the gap's power widened it (+-6.5 J)."""
    drop_w = 690 - 124
    decay_j = 0.01 * sum(124 + f * drop_w for f in (0.51, 0.28, 0.12))
    levels = [124, 124, (0.07 * 124 + 0.03 * 690) / 0.1,
              (0.045 * 690 + decay_j + 0.025 * 124) / 0.1, 124, 124, 124, 124]

    def end_uncertainty_j(sample_w: float | None) -> float:
        timeline = _timeline(levels)
        timeline.mark(10.27, "begin")
        timeline.mark(10.345, "end")
        if sample_w is not None:
            timeline.observe_power(10.33, sample_w)
        start = timeline.energy_at(10.27, final=True)
        end = timeline.energy_at(10.345, final=True)
        assert start is not None and end is not None
        assert end.energy_j - start.energy_j == pytest.approx(0.075 * 690, rel=0.01)
        return end.uncertainty_j

    prior_j = end_uncertainty_j(None)
    assert end_uncertainty_j(124.0) == pytest.approx(prior_j)
    assert end_uncertainty_j(690.0) == pytest.approx(prior_j)
    # the prior: the decay's start anywhere within the drop (a uniform), at 95%
    assert prior_j > 1.96 * 0.0091 * drop_w / math.sqrt(3.0)


# ------------------------------------------------------------------------ refresh grid


@pytest.mark.parametrize("period_s", [0.1, 0.05])
def test_refresh_period_is_learned_not_assumed(period_s: float) -> None:
    # learning: a read every 2 ms until 4 refreshes
    meter, calls = _read_for(1.0, 2.0, period_s=period_s, jitter_s=0.0005)
    learned_ms = float(meter.describe()["gpu:0.refresh_period_ms"])
    assert learned_ms == pytest.approx(1000 * period_s, rel=0.01)
    # then a few counter reads around each refresh (and 3 calls per 10 Hz poll), no busy loop
    assert calls < 2.0 * (4 / period_s + 3 * 10)


def _read_for(learn_s: float, count_s: float, **gpu_args: float | None) -> tuple[NvmlMeter, int]:
    """An emulated H200 (``gpu_args``: its refresh paces) read by a real meter and sampler
    on a simulated clock from the heavy load's start: ``learn_s``, then ``count_s`` more;
    the meter and the NVML calls made in that last stretch."""
    clock = Clock()
    session = h200_session()
    gpu = EmulatedGpu(session.signal, clock, **gpu_args)  # type: ignore[arg-type]
    meter = NvmlMeter(nvml=FakeNvml([gpu]), clock=clock)
    clock.t = session.stretches["heavy"][0]
    sampler = EnergySampler([meter], clock=clock, background=False).start()
    drive(sampler, clock, clock.t + learn_s)
    gpu.calls = 0
    drive(sampler, clock, clock.t + count_s)
    sampler.stop()
    return meter, gpu.calls


# ----------------------------------------------------------------------------- accuracy

# The targets, for phases that are the work (power steps where they open and close,
# at any offset from the refreshes): within 1% for phases of 1 s or more, 3% at 0.3 s, 15%
# at 50 ms, as the mean over phases. The worst phase may exceed them at 50 ms and 0.3 s,
# where the ~30 ms decay after a phase ends shares its refresh (benchmarks/README.md).
TARGETS = [
    (kind, length_s, bound)
    for kind in ("idle", "heavy", "bursty", "pulsed")
    for length_s, bound in ((0.05, 0.15), (0.3, 0.03), (1.0, 0.01))
]


@pytest.mark.parametrize(("kind", "length_s", "bound"), TARGETS)
def test_phase_energy_within_target_of_the_exact_integral(
    kind: str, length_s: float, bound: float
) -> None:
    scores = measure_work_phases(kind, length_s, n=10, seed=1) + measure_work_phases(
        kind, length_s, n=10, seed=2)
    errors = [abs(s.final_error) for s in scores]
    assert statistics.fmean(errors) < bound, [f"{e:.3%}" for e in errors]
    assert all(s.flag is None for s in scores)
    # The uncertainty is a 95% interval (issue 24), not a bound: of 20 phases one or two
    # may fall outside it by chance (a 26% chance of two for a calibrated one).
    covered = [abs(s.final_j - s.true_j) <= s.uncertainty_j for s in scores]
    assert sum(covered) >= 0.90 * len(scores)


def test_the_stated_uncertainty_covers_the_error_without_drowning_it() -> None:
    """An uncertainty is useful only if it is not many times the error: for 1 s phases of
    heavy work it is a fraction of a percent (the even split's bound said 5-6%, the bound
    before issue 24 3.1%, 27 times the median error), covers 90% or more of the phases, and
    its median is not many times the median error. A normal error's 95% interval is 2.9
    times its median, but over 40 phases that ratio moves by ~20% from the draw alone
    (a seed pair of these gave 2.1 and another 4.3 with one model), so the test allows 4:
    benchmarks/phase_accuracy.py pools 240 phases a cell against the target of 3."""
    scores = [s for seed in (1, 2, 3, 4) for s in measure_work_phases("heavy", 1.0, n=10,
                                                                       seed=seed)]
    covered = sum(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in scores)
    assert covered >= 0.9 * len(scores)
    assert statistics.fmean(s.uncertainty_j / s.true_j for s in scores) < 0.01
    median_error_j = statistics.median(abs(s.final_j - s.true_j) for s in scores)
    assert statistics.median(s.uncertainty_j for s in scores) <= 4 * median_error_j


def test_boundary_scores_place_a_phase_s_error_at_its_boundaries() -> None:
    """The benchmark's per-boundary view (``phase_accuracy.py --boundaries``) scores every
    boundary the sampler settled against the exact integral: a phase's error is its end's
    less its start's, and a phase that starts alone, after a long gap, is known to a
    fraction of a joule (its start piece holds the gap's power, which nothing moves)."""
    session = work_session("heavy", 1.0, 10, seed=3)
    bounds = measure_boundaries(session, seed=3)
    assert len(bounds) == 2 * len(session.phases)
    phases = measure_session(session, seed=3)
    for k, phase in enumerate(phases):
        start, end = bounds[2 * k], bounds[2 * k + 1]
        assert (start.edge, end.edge) == ("begin", "end")
        assert phase.final_j - phase.true_j == pytest.approx(end.error_j - start.error_j,
                                                             abs=1e-6)
    alone = [b for b in bounds if b.edge == "begin" and not b.back_to_back
             and not b.shares_refresh]
    assert alone and statistics.median(abs(b.error_j) for b in alone) < 0.5


def test_the_stated_uncertainty_is_a_calibrated_95_percent_interval() -> None:
    """Pooled over idle, heavy, bursty and pulsed phases of 50 ms, 0.3 s and 1 s (240
    phases), the truth lies within the stated uncertainty for 90-99% of them: neither a
    bound that covers everything by being far too wide, nor too narrow."""
    scores = [s for kind, length_s, _ in TARGETS for seed in (1, 2)
              for s in measure_work_phases(kind, length_s, n=10, seed=seed)]
    covered = sum(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in scores)
    assert 0.90 <= covered / len(scores) <= 0.99


def test_the_95_percent_interval_covers_95_percent_of_synthetic_noise() -> None:
    """Where the error model's premises hold (steady work with noisy power, refresh times
    with jitter, phases that are the work: idle and heavy phases of 1 and 3 s, 320 of
    them), the stated 95% interval covers the truth for 90-100% of phases: within 5 points
    of nominal, so the stored +- is neither a bound nor too narrow."""
    scores = [s for kind in ("idle", "heavy") for length_s in (1.0, 3.0)
              for seed in range(1, 9)
              for s in measure_work_phases(kind, length_s, n=10, seed=seed)]
    covered = sum(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in scores) / len(scores)
    assert abs(covered - 0.95) <= 0.05, covered


def test_boundary_reads_alone_are_off_by_up_to_a_refresh() -> None:
    """Today's method, for contrast: a 50 ms phase reads 0 J or a whole refresh's energy,
    and splitting each refresh evenly (not where the work is) still misses by tens of %."""
    scores = measure_work_phases("heavy", 0.05, n=10, seed=3)
    assert max(abs(s.read_error) for s in scores) > 0.5
    assert statistics.fmean(abs(s.final_error) for s in scores) < 0.15


def test_evaluation_between_training_epochs_is_measured() -> None:
    """The recording's case: short evaluations back to back with training epochs. The
    epochs teach the decay after a phase ends, and the evaluations' share of each refresh
    follows where their work is."""
    scores: list[PhaseScore] = []
    for seed in (1, 2):
        scores += measure_session(epoch_session(0.05, epochs=5, seed=seed), seed)
    evals = [s for s in scores if s.stretch == "heavy"]
    trains = [s for s in scores if s.stretch == "train_small"]
    assert statistics.fmean(abs(s.final_error) for s in evals) < 0.10
    assert statistics.fmean(abs(s.read_error) for s in evals) > 0.3
    assert statistics.fmean(abs(s.final_error) for s in trains) < 0.01


def _heavy_run(seed: int) -> NvmlMeter:
    """Eight 1 s phases of heavy work measured on the emulated H200: the meter afterwards,
    with what it learned of the GPU."""
    clock = Clock(100.0)
    session = work_session("heavy", 1.0, 8, seed=seed)
    gpu = EmulatedGpu(session.signal, clock, seed=seed)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), clock=clock)
    clock.t = session.lead_in_s - 1.5
    sampler = EnergySampler([meter], clock=clock, background=False).start()
    for start, end in session.phases:
        drive(sampler, clock, start)
        sampler.begin_phase("train_epoch")
        drive(sampler, clock, end)
        sampler.end_phase()
    drive(sampler, clock, clock.t + 1.0)
    sampler.stop()
    return meter


def test_short_evaluations_between_training_epochs_are_not_counted_low() -> None:
    """E_in of an epoch loop on a GPU: 10 ms and 50 ms evaluations back to back with
    training. Each training epoch starts a launch (1-5 ms here) after its phase opens, and
    the evaluation's decay fills the 1-5 ms gap after it as the H200's does (half the drop
    at first); an epoch start taken at the training's full power from its boundary on, and
    a decay that starts at the full drop, took that energy from the evaluation: their
    total read 11% and 3% low over these 48 each (8 seeds). Each 10 ms one is still off by
    ~25% (a refresh holds ten times its energy), so their total moves by ~4% from the draw
    alone; the 50 ms ones' by ~1%."""
    for eval_s, within in ((0.01, 0.05), (0.05, 0.02)):
        evals = [s for seed in range(1, 9)
                 for s in measure_session(epoch_session(eval_s, epochs=6, seed=seed), seed)
                 if s.stretch == "heavy"]
        total = sum(s.final_j for s in evals) / sum(s.true_j for s in evals)
        assert total == pytest.approx(1.0, abs=within), eval_s


def test_the_launch_before_a_phase_s_work_is_learned() -> None:
    """A phase whose work starts 3 ms after it opens, with two refreshes of steady gap
    before and two of steady work after: the refresh of its start holds 3 ms at the gap's
    power, and that is learned (the H200 recording's ~2 ms is the prior); the hardware
    description says so for a run on the emulated H200, whose launches are 1-5 ms."""
    launch_s = 0.003
    timeline = _timeline([124] * 5 + [(0.03 * 124 + launch_s * 124 + (0.07 - launch_s) * 690)
                                      / 0.1] + [690] * 2)
    timeline.mark(10.53, "begin")
    marks = timeline.marks
    assert marks.launches_learned == 0 and marks.launch()[0] == pytest.approx(0.002)
    marks.learn_launch(list(timeline.changes)[3:9], 0.1)  # the start in [10.5, 10.6]
    assert marks.launches_learned == 1
    assert marks.launch()[0] == pytest.approx(launch_s, abs=1e-4)

    meter = _heavy_run(seed=4)
    timeline = meter._gpus[0].timeline  # noqa: SLF001 - what it learned
    assert timeline is not None and timeline.marks.launches_learned >= 2
    assert 0.001 < timeline.marks.launch()[0] < 0.005
    assert meter.describe()["gpu:0.launch_ms"].endswith(
        f"(learned from {timeline.marks.launches_learned} phase start(s))")


def test_a_gap_of_a_few_ms_holds_the_start_of_the_decay_as_the_h200_s() -> None:
    """The H200's decay after a phase drops at once to about half the drop (450, 300,
    200 W for 10 ms each after 760 W, over 124 W): a gap of 3 ms between two phases holds
    3 ms at 51% of the drop over the gap's power. An exponential of the same energy that
    starts at the full drop gave it 1.7 times as much, taken from the phase after it."""
    from sweeper.energy.attribution import DEFAULT_TAIL_S, decay_held_s

    assert decay_held_s(DEFAULT_TAIL_S, 0.0, 1.0) == pytest.approx(DEFAULT_TAIL_S)
    assert decay_held_s(DEFAULT_TAIL_S, 0.0, 0.003) == pytest.approx(0.51 * 0.003)
    gap_j = 0.003 * (124 + 0.51 * (690 - 124))
    refresh_j = 0.05 * 690 + gap_j + 0.047 * 690  # [10.5, 10.6]: A ends 10.55, B at 10.553
    timeline = _timeline([124] * 3 + [(0.005 * 124 + 0.095 * 690) / 0.1, 690, refresh_j / 0.1,
                                      690, 690, (0.005 * 690 + 0.095 * 124) / 0.1, 124, 124])
    for t_s, edge in ((10.305, "begin"), (10.55, "end"), (10.553, "begin"), (10.805, "end")):
        timeline.mark(t_s, edge)
    end, start = timeline.energy_at(10.55, final=True), timeline.energy_at(10.553, final=True)
    assert end is not None and start is not None
    assert start.energy_j - end.energy_j == pytest.approx(gap_j, rel=0.02)


def test_the_decay_after_a_phase_is_learned() -> None:
    """After heavy work stops, the H200 decays over ~30 ms (the recording's 450, 300, 200 W
    after a 760 W pulse): ~9 ms of the drop's power, learned from phase ends followed by
    two refreshes of gap."""
    meter = _heavy_run(seed=4)
    timeline = meter._gpus[0].timeline  # noqa: SLF001 - what it learned
    assert timeline is not None
    assert timeline.marks.tails_learned >= 3
    assert 0.006 < timeline.marks.tail_s < 0.013
    decay = meter.describe()["gpu:0.decay_ms"]  # the run's hardware description says so
    assert decay.endswith(f"(learned from {timeline.marks.tails_learned} phase end(s))")


def test_windows_cut_through_continuous_load_break_the_premise_of_the_uncertainty() -> None:
    """A window whose edges are not where the load changes breaks the attribution's premise
    (the gap between two windows is not idle): errors grow, and the stated uncertainty,
    a 95% interval for phases that are the work, covers fewer of them. (Before issue 24 it
    covered 85% here, by adding to every boundary the chance that a gap held the work: that
    made phases that are the work state 5-150 times their median error. No phase of sweeper
    is such a window: profile windows are checkpoints, which mark no boundary.)"""
    scores = measure_phases("heavy", 0.3, n=12, seed=2) + measure_phases(
        "pulsed", 0.05, n=12, seed=2)
    work = measure_work_phases("heavy", 0.3, n=12, seed=2) + measure_work_phases(
        "pulsed", 0.05, n=12, seed=2)
    covered = sum(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in scores) / len(scores)
    work_covered = sum(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in work) / len(work)
    assert 0.6 <= covered < work_covered
    assert statistics.fmean(abs(s.final_error) for s in scores) > statistics.fmean(
        abs(s.final_error) for s in work)


# -------------------------------------------------------------------- sampler behaviour


def test_phase_is_final_only_after_the_next_refresh_and_stop_finishes_all() -> None:
    clock = Clock()
    nvml, gpu, session = emulated_h200(clock)
    lo, _ = session.stretches["heavy"]
    clock.t = lo
    meter = NvmlMeter(nvml=nvml, clock=clock)
    sampler = EnergySampler([meter], clock=clock, background=False).start()
    drive(sampler, clock, lo + 1.0)
    sampler.begin_phase("train_epoch")
    drive(sampler, clock, lo + 1.5)
    first = sampler.end_phase()
    assert not first.final and first.methods == {"gpu:0": "read"}
    drive(sampler, clock, lo + 1.75)  # two refreshes later
    assert first.final and first.methods == {"gpu:0": "interpolated"}
    true_j = gpu.energy_j(lo + 1.5) - gpu.energy_j(lo + 1.0)
    assert first.energy_j == pytest.approx(true_j, rel=0.005)
    assert abs(first.energy_j - true_j) <= first.energy_uncertainty_j
    sampler.begin_phase("eval")
    drive(sampler, clock, lo + 1.8)
    last = sampler.end_phase()
    summary = sampler.stop()  # simulated clock: no waiting, the end is taken as read
    assert last.final and last.methods == {"gpu:0": "read"}
    assert last.energy_uncertainty_j > 0.05 * last.energy_j  # a read boundary says so
    assert summary.energy_uncertainty_j > 0 and summary.uncertainty_by_domain.keys() == {"gpu:0"}


def test_background_thread_on_the_real_clock_finishes_phases_at_stop() -> None:
    session = h200_session(t0_s=time.perf_counter() - 15.0)  # heavy load from now on
    gpu = EmulatedGpu(session.signal, time.perf_counter)
    meter = NvmlMeter(nvml=FakeNvml([gpu]))
    sampler = EnergySampler([meter], sample_hz=10).start()
    deadline = time.perf_counter() + 3.0  # the grid is learned in ~0.4 s on an idle machine
    while "gpu:0.refresh_period_ms" not in meter.describe() and time.perf_counter() < deadline:
        time.sleep(0.05)
    with sampler.phase("train_epoch") as ph:
        t0 = time.perf_counter()
        time.sleep(0.25)
        t1 = time.perf_counter()
    summary = sampler.stop()
    assert ph.result is not None and ph.result.final
    assert ph.result.methods == {"gpu:0": "interpolated"}
    true_j = gpu.energy_j(t1) - gpu.energy_j(t0)
    # The boundary times are those of the reads, microseconds from t0 and t1. On a machine
    # so busy that the sampler thread misses refreshes, the error grows, and so must the
    # uncertainty.
    error_j = abs(ph.result.energy_j - true_j)
    assert error_j <= max(0.03 * true_j, ph.result.energy_uncertainty_j)
    # a ~0.4 s burst of reads every 2 ms to learn the grid, then ~40 reads a second
    assert sampler.thread_cpu_s < 0.1 * summary.duration_s


# ------------------------------------------------------------- power-integration fallback


def _integrated(has_instant: bool) -> tuple[str, float, float]:
    clock = Clock()
    session = h200_session()
    gpu = EmulatedGpu(session.signal, clock, has_counter=False, has_instant=has_instant)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), clock=clock)
    lo, hi = session.stretches["heavy"]
    clock.t = lo - 0.5
    sampler = EnergySampler([meter], sample_hz=10, clock=clock, background=False).start()
    drive(sampler, clock, lo)
    sampler.begin_phase("train_epoch")
    drive(sampler, clock, hi)
    result = sampler.end_phase()
    sampler.stop()
    true_j = gpu.energy_j(hi) - gpu.energy_j(lo)
    return meter.describe()["gpu:0.energy_method"], result.energy_j / true_j - 1, (
        result.energy_uncertainty_j / true_j
    )


def test_without_the_counter_the_instant_field_is_integrated() -> None:
    method, error, rel_unc = _integrated(has_instant=True)
    assert method == "instant_power_integration"
    assert abs(error) < 0.03 and 0.2 <= rel_unc <= 0.3


def test_get_power_usage_is_the_last_resort_and_reads_low_under_load() -> None:
    method, error, rel_unc = _integrated(has_instant=False)
    assert method == "power_usage_integration"
    assert -0.15 < error < -0.05  # the 1 s mean lags the load (-11% on the real H200)
    assert rel_unc >= abs(error)


# ------------------------------------------------------------------- impossible figures


def test_a_phase_above_what_the_gpu_can_draw_is_flagged_with_the_reason() -> None:
    clock = Clock()
    base = h200_session()
    times, powers = list(base.signal.times_s), list(base.signal.powers_w)
    lo, _ = base.stretches["idle"]
    # A counter glitch: 60 kW for 20 ms (1.2 kJ) inside an idle stretch.
    glitch_at, after = lo + 2.0, lo + 2.02
    keep = [k for k, t in enumerate(times) if not glitch_at <= t <= after]
    i = next(n for n, k in enumerate(keep) if times[k] > after)
    times = [times[k] for k in keep[:i]] + [glitch_at, after] + [times[k] for k in keep[i:]]
    powers = ([powers[k] for k in keep[:i]] + [60_000.0, base.signal.power_w(after)]
              + [powers[k] for k in keep[i:]])
    gpu = EmulatedGpu(PowerSignal(times, powers), clock)
    meter = NvmlMeter(nvml=FakeNvml([gpu]), clock=clock)
    clock.t = lo
    sampler = EnergySampler([meter], clock=clock, background=False).start()
    drive(sampler, clock, lo + 1.9)
    with sampler.phase("eval") as bad:
        drive(sampler, clock, lo + 2.4)
    with sampler.phase("eval", 1) as fine:
        drive(sampler, clock, lo + 3.0)
    sampler.stop()
    assert bad.result is not None and fine.result is not None
    flag = bad.result.flag or ""
    assert "exceeds the 875 W" in flag and "700 W maximum power limit" in flag
    assert "not a measurement" in flag
    assert fine.result.flag is None


# ------------------------------------------------------------------------- the timeline


def test_timeline_survives_an_off_grid_glitch_and_follows_a_moved_grid() -> None:
    """A read stalled by the host (the recording has one, 86 ms off during CUDA context
    creation) must not move the grid; a grid that really moved is learned again."""
    from sweeper.energy.refresh import RefreshTimeline

    timeline = RefreshTimeline()
    period, energy, t = 0.1, 0.0, 50.0
    refresh = 50.0005

    def run(until: float, *, glitch_at: float | None = None) -> None:
        nonlocal t, energy, refresh
        while t < until:
            due = timeline.next_read_s(t)
            t = max(due if due is not None else t + 0.01, t + 1e-4)
            while refresh <= t:
                energy += 12.4  # 124 W idle
                refresh += period
            if glitch_at is not None and t >= glitch_at:
                timeline.observe(glitch_at, energy + 8.0)  # a change off the grid
                glitch_at = None
            timeline.observe(t, energy)

    run(51.0)
    assert timeline.period_s == pytest.approx(period, rel=0.002)
    run(52.0, glitch_at=51.55)
    assert timeline.period_s == pytest.approx(period, rel=0.002)
    got = timeline.energy_at(51.8)
    assert got is not None and got.method == "interpolated"
    refresh += 0.037  # the grid jumps (a driver reset)
    run(54.0)
    assert timeline.period_s == pytest.approx(period, rel=0.002)
    grid_error = min(abs((c.t_s - refresh) % period) for c in list(timeline.changes)[-3:])
    assert min(grid_error, period - grid_error) < 0.003


def test_a_fast_refreshing_counter_is_not_watched() -> None:
    meter, calls = _read_for(1.0, 1.0, period_s=0.01, jitter_s=0.0001)
    assert meter.describe()["gpu:0.refresh_period_ms"] == "10.0"
    assert calls <= 3 * 11  # the 10 Hz polls only


# ------------------------------------------------------------------ where the work is


def _timeline(levels_w: list[float], period_s: float = 0.1, t0_s: float = 10.0):
    """A timeline that has seen refreshes every ``period_s`` from ``t0_s``, each interval
    holding the given mean power."""
    from sweeper.energy.refresh import Change, RefreshTimeline

    timeline = RefreshTimeline()
    timeline.period_s, timeline._anchor_s = period_s, t0_s  # noqa: SLF001 - a learned grid
    energy_j = 0.0
    for k in range(len(levels_w) + 1):
        t_s = t0_s + k * period_s
        if k:
            energy_j += levels_w[k - 1] * period_s
        timeline.changes.append(Change(t_s - 0.001, t_s + 0.001, energy_j, t_s))
        timeline._times.append(t_s)  # noqa: SLF001
    return timeline


def test_a_phase_inside_one_refresh_gets_the_energy_above_the_gap() -> None:
    """A 50 ms pulse at 760 W inside one refresh, the GPU at 124 W around it and decaying
    over 30 ms after it as the H200 does (450, 300, 200 W): the phase gets its pulse;
    splitting the refresh evenly would give it half the refresh."""
    refresh_j = 0.02 * 124 + 0.05 * 760 + 0.01 * (450 + 300 + 200)  # [10.5, 10.6]
    timeline = _timeline([124, 124, 124, 124, 124, refresh_j / 0.1, 124, 124, 124])
    timeline.mark(10.52, "begin")
    timeline.mark(10.57, "end")
    start, end = timeline.energy_at(10.52, final=True), timeline.energy_at(10.57, final=True)
    assert start is not None and end is not None
    assert end.energy_j - start.energy_j == pytest.approx(0.05 * 760, rel=0.02)
    assert end.uncertainty_j > 0 and start.uncertainty_j > 0


def test_the_few_ms_of_a_phase_before_its_decay_keep_the_work_s_power() -> None:
    """A 760 W phase that ends 2.5 ms into a refresh, then decays as the H200 does (450,
    300, 200 W for 10 ms each) to 124 W: the 2.5 ms get 760 W, not the leftover after a
    decay priced from the leftover itself (which fed back, gave the gap the whole refresh
    and the phase 0 J: such 50 ms phases read 2-8% low on the emulated H200)."""
    tail_j = 0.01 * (450 + 300 + 200)
    refresh_j = 0.0025 * 760 + tail_j + 0.0675 * 124  # [10.5, 10.6]: the phase ends at 10.5025
    timeline = _timeline([124] * 4 + [(0.0475 * 760 + 0.0525 * 124) / 0.1, refresh_j / 0.1]
                         + [124] * 4)
    timeline.mark(10.4525, "begin")
    timeline.mark(10.5025, "end")
    start = timeline.energy_at(10.4525, final=True)
    end = timeline.energy_at(10.5025, final=True)
    assert start is not None and end is not None
    in_refresh_j = end.energy_j - timeline.energy_at(10.5, final=True).energy_j
    assert in_refresh_j == pytest.approx(0.0025 * 760, rel=0.1)
    assert end.energy_j - start.energy_j == pytest.approx(0.05 * 760, rel=0.01)


def test_power_steps_where_a_phase_begins_not_across_the_refresh() -> None:
    timeline = _timeline([124] * 5 + [(0.03 * 124 + 0.07 * 690) / 0.1] + [690] * 4)
    timeline.mark(10.53, "begin")
    got = timeline.energy_at(10.53, final=True)
    assert got is not None
    assert got.energy_j == pytest.approx(5 * 12.4 + 0.03 * 124, rel=1e-9)
    unmarked = _timeline([124] * 5 + [(0.03 * 124 + 0.07 * 690) / 0.1] + [690] * 4)
    linear = unmarked.energy_at(10.53, final=True)  # no phase boundary known: even split
    assert linear is not None and linear.energy_j > got.energy_j + 5.0


def test_a_refresh_early_by_its_jitter_is_placed_at_the_read_that_saw_it() -> None:
    """A refresh 3.6 ms early (the recording's jitter has such tails) seen by the read just
    before the expected refresh belongs there, not in the middle of a wide bracket."""
    from sweeper.energy.refresh import Change

    timeline = _timeline([124] * 3)
    change = Change(lo_s=10.33, hi_s=10.3972, value_j=50.0, t_s=0.0)
    assert timeline._on_grid(change) == pytest.approx(10.3972)  # noqa: SLF001


# ------------------------------------------------------------ the real H200, replayed


def test_the_real_recording_replayed_gives_identical_pulses_alike_and_long_loads_exactly() -> None:
    """The H200 recording itself (tests/data), polled as the card reported it: its ten
    identical 50 ms pulses come out alike and at their work's power (~760 W), where
    boundary reads give 0-36 J; its 4 s loads agree with the counter over whole refreshes
    less the decay after them, learned from the heavy load's end (8 ms of the drop)."""
    from sweeper.energy.attribution import PhaseMarks
    from tests.fake_nvml import load_recording, measure_recording

    rec = load_recording()
    m = rec.marks
    loads = [(n, m[f"{n}_start"], m[f"{n}_end"]) for n in ("heavy", "bursty")]
    pulses = [(f"pulse{k}", m[f"pulse{k}_start"], m[f"pulse{k}_end"]) for k in range(1, 10)]
    tails: list[float] = []
    learn = PhaseMarks.learn_tail

    def spy(self: PhaseMarks, changes: list, period_s: float, *rest: float) -> None:
        learn(self, changes, period_s, *rest)
        tails[:] = list(self._tails)  # noqa: SLF001 - what it learned

    PhaseMarks.learn_tail = spy  # type: ignore[method-assign]
    try:
        got = measure_recording(loads + pulses, rec)
    finally:
        PhaseMarks.learn_tail = learn  # type: ignore[method-assign]
    assert tails and 0.006 < tails[0] < 0.011
    for (_, start, end), (name, _, new_j, unc_j) in zip(loads, got[:2], strict=True):
        reference_j, _ = rec.energy_above_idle_j(start, end)
        assert abs(new_j - reference_j) < max(0.005 * reference_j, unc_j), name
    pulse_w = [new_j / (end - start) for (_, start, end), (_, _, new_j, _) in zip(
        pulses, got[2:], strict=True)]
    assert statistics.pstdev(pulse_w) < 0.05 * statistics.fmean(pulse_w)
    assert 650 < statistics.fmean(pulse_w) < 850  # the pulses' load, not idle nor a refresh
    reads = [read_j for _, read_j, _, _ in got[2:]]
    assert min(reads) == 0.0 and statistics.pstdev(reads) > 5.0  # what boundary reads gave
    for (_, start, end), (_, _, new_j, _) in zip(pulses, got[2:], strict=True):
        reference_j, _ = rec.energy_above_idle_j(start, end)  # with the decay after it
        assert 0 < reference_j - new_j < 12.0


@pytest.mark.parametrize(("has_instant", "method_error"), [(True, (-0.03, 0.0)),
                                                          (False, (-0.15, -0.05))])
def test_without_the_counter_the_real_recording_is_integrated_within_its_stated_bounds(
    has_instant: bool, method_error: tuple[float, float]
) -> None:
    """The real H200's heavy load, as a GPU without the energy counter would measure it:
    the instant field integrates within a few percent of the counter (-1.4% in the
    recording's own analysis), GetPowerUsage reads 8-11% low (its 1 s mean lags); each
    stays within the uncertainty it is stored with."""
    from tests.fake_nvml import load_recording, measure_recording

    rec = load_recording()
    start, end = rec.marks["heavy_start"], rec.marks["heavy_end"]
    reference_j, _ = rec.energy_above_idle_j(start, end)
    ((_, _, got_j, unc_j),) = measure_recording(
        [("heavy", start, end)], rec, has_counter=False, has_instant=has_instant)
    error = got_j / reference_j - 1
    assert method_error[0] < error < method_error[1], f"{error:+.2%}"
    assert abs(got_j - reference_j) <= unc_j


def test_a_refresh_time_is_known_to_its_bracket_as_well_as_to_the_grid() -> None:
    """A refresh lies on the grid within the jitter and inside the bracket of reads that saw
    it: its time is known to the normal cut to the bracket, less than either alone (checked
    against draws of that normal kept where they fall in the bracket)."""
    import random

    from sweeper.energy.refresh import Change

    timeline = _timeline([124] * 3)
    timeline.jitter_s = 0.0012  # residuals seen on the grid (a 2 ms bracket's spread in)
    sd_s = timeline.refresh_sd_s
    assert sd_s == pytest.approx(math.sqrt(0.0012**2 - 0.002**2 / 12))
    rng = random.Random(0)
    for lo_s, hi_s in ((10.2994, 10.3014), (10.2990, 10.2999), (10.2950, 10.3100)):
        change = Change(lo_s, hi_s, 40.0, 0.0)
        change.t_s = timeline._on_grid(change)  # noqa: SLF001 - as observe places it
        draws = [t for t in (rng.gauss(10.3, sd_s) for _ in range(200_000)) if lo_s < t <= hi_s]
        rms_s = math.sqrt(statistics.fmean((t - change.t_s) ** 2 for t in draws))
        assert timeline.time_sd_s(change) == pytest.approx(rms_s, rel=0.03)
        assert timeline.time_sd_s(change) <= min(sd_s, (hi_s - lo_s) / math.sqrt(3)) + 1e-12


def test_a_boundary_s_uncertainty_follows_every_rate_its_refresh_times_move() -> None:
    """A boundary 30 ms into a refresh, the work before it at the previous refresh's mean
    power P: the estimate E1 + P (t - t1) with P = (E1 - E0) / (t1 - t0) moves with t1 by
    -P (1 + 30/100) and with t0 by +P 30/100; the refreshes after it do not move it. Those
    are its terms, each 1.96 sd of that refresh's time: the end piece's power times the
    jitter alone missed the rate."""
    from sweeper.energy.refresh import COVERAGE_Z

    timeline = _timeline([124] * 5 + [(0.03 * 124 + 0.07 * 690) / 0.1] + [690] * 4)
    timeline.mark(10.53, "begin")
    got = timeline.energy_at(10.53, final=True)
    assert got is not None
    terms = {t_s: c for (t_s, piece), c in got.shared if piece == -1}
    c0, c1 = timeline.changes[4], timeline.changes[5]
    assert set(terms) == {c0.t_s, c1.t_s}
    assert terms[c1.t_s] == pytest.approx(
        -COVERAGE_Z * 124 * 1.3 * timeline.time_sd_s(c1), rel=1e-3)
    assert terms[c0.t_s] == pytest.approx(
        COVERAGE_Z * 124 * 0.3 * timeline.time_sd_s(c0), rel=1e-3)



def test_a_piece_above_what_the_gpu_can_draw_widens_the_levels_that_put_it_there() -> None:
    """An evaluation ends 0.7 ms into a refresh and training starts 1.8 ms in, at 304 W,
    though the next refresh's mean is 280 W. Taking the training piece at 280 W leaves the
    evaluation's 0.7 ms more than 2,000 W, which no 700 W card draws: the training level
    was off by at least the excess, and the boundary's +- says so (and covers the truth).
    Nor is the figure kept: the pieces are held at what the card can draw, and the rest
    goes to the training, which brings the boundary from 2.4 J off to 0.7 J off."""
    truth_j = 0.0007 * 690 + 0.0011 * 400 + 0.0982 * 304
    levels = [312, 312, 312, 312, 500, truth_j / 0.1, 280, 280, 280, 280]
    at_limit = _timeline(levels)
    unbounded = _timeline(levels)
    at_limit.max_power_w = 700 * 1.25
    for timeline in (at_limit, unbounded):
        timeline.mark(10.45, "begin")  # the evaluation
        timeline.mark(10.5007, "end")
        timeline.mark(10.5018, "begin")  # training
    wide, narrow = at_limit.energy_at(10.5018, final=True), unbounded.energy_at(10.5018, final=True)
    assert wide is not None and narrow is not None
    true_j = at_limit.changes[5].value_j + 0.0007 * 690 + 0.0011 * 400
    assert abs(narrow.energy_j - true_j) > narrow.uncertainty_j  # missed without the limit
    assert abs(wide.energy_j - true_j) <= wide.uncertainty_j
    assert abs(wide.energy_j - true_j) < 0.5 * abs(narrow.energy_j - true_j)
    eval_end = at_limit.energy_at(10.5007, final=True)
    assert eval_end is not None
    assert eval_end.energy_j - at_limit.changes[5].value_j <= 875 * 0.0007 + 1e-9


def test_a_phase_the_split_leaves_nothing_is_not_stated_exact() -> None:
    """A 10 ms evaluation between two training phases in one refresh; the training after it
    draws 300 W, 12 W under the next refresh's mean. At the neighbours' levels the other
    pieces take the whole refresh and the evaluation 0 J, which is below anything the GPU
    was seen to draw: the figure is wrong by at least that, and its +- covers the truth
    (not 0 J +- 0, as it was)."""
    eval_j = 0.01 * 150
    refresh_j = (0.0112 * 355 + 0.0041 * 125 + eval_j + 0.0028 * 125 + 0.0719 * 300)
    timeline = _timeline([125, 125, 355, 355, 355, 355, refresh_j / 0.1, 312, 312, 312, 312])
    timeline.max_power_w = 875.0
    for t_s, edge in ((10.2, "begin"), (10.6112, "end"), (10.6153, "begin"), (10.6253, "end"),
                      (10.6281, "begin")):
        timeline.mark(t_s, edge)
    start, end = timeline.energy_at(10.6153, final=True), timeline.energy_at(10.6253, final=True)
    assert start is not None and end is not None
    got_j = end.energy_j - start.energy_j
    assert got_j < 0.5 * eval_j  # the split left it (nearly) nothing
    from sweeper.energy.boundary import _combined

    unc_j = _combined(start.uncertainty_j, end.uncertainty_j, start.shared, end.shared)
    assert abs(got_j - eval_j) <= unc_j


def test_a_fault_in_the_refresh_model_is_said_once_and_the_reads_are_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in settling a boundary must not pass silently as a measurement: the phases are
    taken as read (a boundary read is off by up to a refresh), and the log says why, once."""
    from sweeper.energy.refresh import RefreshTimeline

    def broken(self: RefreshTimeline, t_s: float, *, final: bool = False) -> None:
        raise RuntimeError("a fault in the split")

    monkeypatch.setattr(RefreshTimeline, "energy_at", broken)
    with caplog.at_level("WARNING", logger="sweeper.energy.boundary"):
        scores = measure_work_phases("heavy", 1.0, n=3, seed=1)
    assert all(s.final_j == s.read_j for s in scores)
    said = [r.getMessage() for r in caplog.records if "resolve of gpu:0 failed" in r.getMessage()]
    assert len(said) == 1 and "a fault in the split" in said[0] and "taken as read" in said[0]
    # Phases of 50 ms taken as read: a read may be a refresh behind, so a phase no refresh
    # fell inside reads 0 J, and its +- says how far that is from the truth (not 0 J +- 0).
    short = measure_work_phases("heavy", 0.05, n=6, seed=1)
    assert any(s.read_j == 0.0 for s in short)
    assert all(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in short)


def test_a_decision_on_ended_phases_can_wait_for_their_settled_figures() -> None:
    """Right after a phase ends, the refresh after its end is not yet seen: its figure is
    the boundary reads', off by up to a refresh. `settle_ended` waits (a refresh or two) until
    it is final, as the search's inference gate does before judging a trial."""
    session = h200_session(t0_s=time.perf_counter() - 15.0)  # heavy load from now on
    gpu = EmulatedGpu(session.signal, time.perf_counter)
    meter = NvmlMeter(nvml=FakeNvml([gpu]))
    sampler = EnergySampler([meter], sample_hz=10).start()
    deadline = time.perf_counter() + 3.0
    while "gpu:0.refresh_period_ms" not in meter.describe() and time.perf_counter() < deadline:
        time.sleep(0.05)
    with sampler.phase("train_epoch") as ph:
        time.sleep(0.25)
    assert ph.result is not None and not ph.result.final
    started = time.perf_counter()
    sampler.settle_ended()
    waited_s = time.perf_counter() - started
    assert ph.result.final and ph.result.methods == {"gpu:0": "interpolated"}
    assert waited_s < 1.0
    sampler.stop()
