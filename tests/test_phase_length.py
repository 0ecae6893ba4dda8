"""Phases long enough to measure: the inference benchmark's time floor and the study's
protocol (real torch on tiny data), the forecast profile's time floors, and the
low-resolution mark for phases shorter than a few meter refreshes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sweeper.energy.estimate import EstimateMeter
from sweeper.energy.resolution import low_resolution_reason, min_span_s, slowest_meter
from sweeper.predict.forecast import ProfileWindow
from sweeper.training.trainer import Trainer


def _trainer() -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"),
                   "fp32")


def _loader(n: int = 40, batch: int = 16) -> DataLoader:
    data = TensorDataset(torch.randn(n, 1, 4, 4), torch.randint(0, 4, (n,)))
    return DataLoader(data, batch_size=batch)


def test_inference_runs_at_least_its_batches_and_its_seconds() -> None:
    trainer = _trainer()
    plain = trainer.inference_benchmark(trainer.cached_inputs(_loader(), 2), batches=2,
                                        min_seconds=0.0)
    assert plain.batches == 2 and plain.samples == 32
    floored = trainer.inference_benchmark(trainer.cached_inputs(_loader(), 2), batches=2,
                                          min_seconds=0.25)
    assert floored.duration_s >= 0.25 and floored.batches > 2
    # The first `batches` batches (16 samples each) are cached and cycled.
    assert floored.samples == 16 * floored.batches


def test_study_protocol_passes_the_whole_test_set() -> None:
    trainer = _trainer()
    five = trainer.inference_passes(_loader(40), passes=5, min_seconds=0.0)
    assert five.samples == 5 * 40 and five.batches == 5 * 3
    more = trainer.inference_passes(_loader(40), passes=1, min_seconds=0.2)
    assert more.duration_s >= 0.2 and more.samples % 40 == 0 and more.samples > 40


class Steps:
    """A clock advanced by the test (exact binary fractions), and energy at 100 W."""

    def __init__(self) -> None:
        self.t_s = 0.0

    def clock(self) -> float:
        return self.t_s

    def energy_j(self) -> float:
        return 100.0 * self.t_s


def test_profile_window_has_time_floors() -> None:
    steps = Steps()
    profile = ProfileWindow(1000, 0.05, 2, steps.energy_j, steps.clock,
                            warmup_seconds=0.5, min_seconds=2.0)
    profile.start()
    for step in range(1, 1001):
        steps.t_s += 1 / 64
        profile.on_step(step)
    forecast = profile.result
    assert forecast is not None
    assert forecast.warmup_steps == 32  # 0.5 s of 1/64 s steps, not 2 steps
    assert forecast.profiled_steps == 128  # 2 s, not 5% (50 steps)
    assert forecast.energy_j == pytest.approx(100.0 * 1000 / 64)


def test_profile_window_never_outlasts_training() -> None:
    steps = Steps()
    profile = ProfileWindow(30, 0.05, 2, steps.energy_j, steps.clock, min_seconds=60.0)
    profile.start()
    for step in range(1, 31):
        steps.t_s += 0.01
        profile.on_step(step)
    assert profile.result is not None and profile.result.warmup_steps + \
        profile.result.profiled_steps == 30
    assert profile.result.energy_j == pytest.approx(30.0)  # the measurement itself


def test_low_resolution_marks_phases_under_five_refreshes() -> None:
    assert low_resolution_reason(0.012, 0.1, "nvml") is not None
    assert "nvml meter (100 ms each)" in low_resolution_reason(0.3, 0.1, "nvml")  # type: ignore[operator]
    assert low_resolution_reason(0.5, 0.1, "nvml") is None
    assert low_resolution_reason(0.04, 0.01, "estimate") is not None


class _Nvmlish:
    source = "nvml"
    refresh_period_s = 0.05  # a meter that learned its own period


def test_slowest_meter_sets_the_default_spans() -> None:
    estimate = EstimateMeter()
    assert slowest_meter([estimate]) == (0.01, "estimate")
    assert min_span_s([estimate]) == pytest.approx(0.2)
    assert slowest_meter([estimate, _Nvmlish()]) == (0.05, "nvml")  # type: ignore[list-item]
    assert min_span_s([estimate, _Nvmlish()]) == pytest.approx(1.0)  # type: ignore[list-item]
