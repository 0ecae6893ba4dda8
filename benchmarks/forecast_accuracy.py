"""Forecast error (MAPE) of the training energy against the profiling window size.

Trains a small grid of real runs (digits on the CPU by default) with the project's own
trainer and energy meters, recording the cumulative energy and time at every step
boundary (sweeper.predict.trace.StepTrace). Every window is then evaluated on the same
runs with the ProfileWindow's rule, so windows are compared without run-to-run noise.
The actual value is the run's measured training energy (training steps only, as E_tr).

    python benchmarks/forecast_accuracy.py
    python benchmarks/forecast_accuracy.py --models cnn resnet vit --batches 16 32 --epochs 8
    python benchmarks/forecast_accuracy.py --emulated-h200   # deterministic, simulated clock
    python benchmarks/forecast_accuracy.py --per-epoch       # also each epoch's energy

Per run it also prints two noise floors. `floor` is issue 24's: the error of the same
forecaster fed a random 5% of the epochs instead of the first 5% (the window at the same
place in each later epoch, the mean over those epochs): what a profile of that length
misses on that machine wherever in the run it is taken. `chunks` is stricter: a random 5%
of the run's steps in 8 scattered chunks (the mean over 20 draws), which averages over the
host's slow stretches as no contiguous profile can. Then the machine's load (1-minute
average from the OS, before and after the run); whether the forecast's 90% interval
covered the actual E_tr; and the first window's rank among contiguous windows of its
length at every later position, and how often those are within 1.5x the chunk floor: the
first separates what the window's position costs (which the method can remove) from the
host's slow stretches (which hit every position alike), the second is the share a first
window with no positional effect would pass (against each run's epoch floor too, and the
share of benchmarks in which such a window would pass every run). Over the runs, the MAPE
is also set against the runs' mean floors, where single runs' noise averages out. The
interval's coverage line says how often an exactly calibrated 90% interval lands in
80-97% with this many runs (with 6, only 5 of 6 does: 35% of benchmarks).

--emulated-h200 replays training runs through the emulated H200 of tests/fake_nvml.py (the
real recording's refresh grid and jitter, a real NvmlMeter and EnergySampler on a simulated
clock, so the machine's load does not matter): per step the small-net kernels of the
recording's train_small load (312 +- 90 W in 2-8 ms pieces); at the start the clocks and
power ramp over about a second (power from 60% and steps 30% slower, decaying); each epoch
starts with the loader's first batch (30 ms at context idle) and is a phase, as sweeper
runs it; the host's step time wanders by a few per cent over the run.

Targets: MAPE <= 5% with a 5% window (issue 13); issue 24: <= 3% on the emulated H200, and
on the CPU <= 1.5x each run's noise floor; the 90% interval covers 80-97% of the runs.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sweeper import energy  # noqa: E402
from sweeper.datasets import load_dataset  # noqa: E402
from sweeper.energy.resolution import min_span_s  # noqa: E402
from sweeper.models import build_model  # noqa: E402
from sweeper.predict.forecast import Forecast  # noqa: E402
from sweeper.predict.trace import StepTrace, forecast_error, forecast_from_trace  # noqa: E402
from sweeper.training.heap import frozen_heap  # noqa: E402
from sweeper.training.loaders import make_loader  # noqa: E402
from sweeper.training.trainer import Trainer, make_optimizer  # noqa: E402

TARGET_WINDOW, TARGET_MAPE = 0.05, 0.05
TARGET_EMULATED_MAPE, TARGET_FLOOR_RATIO = 0.03, 1.5
FLOOR_DRAWS = 20
DRIFT = 0.0  # per-step log sd of the host's step speed (a random walk within +-5%)


@dataclass(frozen=True)
class TracedRun:
    label: str
    steps: int
    energy_j: list[float]
    time_s: list[float]
    source: str
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    steps_per_epoch: int | None = None
    floors: tuple[float, float] = (0.0, 0.0)  # warm-up and window time floors, as a run's

    @property
    def options(self) -> dict[str, Any]:
        """The ProfileWindow keywords sweeper's run would use (sweeper.run.prepare)."""
        return {"steps_per_epoch": self.steps_per_epoch, "warmup_seconds": self.floors[0],
                "min_seconds": self.floors[1]}


def noise_floor(run: TracedRun, window: float, warmup_steps: int, seed: int) -> float:
    """Mean |error| of the forecast whose per-step rate comes from a random `window` of the
    run's steps (chunks of the window's chunk size, anywhere after the warm-up) instead of
    the first ones: what any profile of that length misses on this run."""
    rng = random.Random(seed)
    first = forecast_from_trace(run.energy_j, run.time_s, window, warmup_steps, **run.options)
    warm, n = first.warmup_steps, first.profiled_steps
    chunk = max(1, n // 8)
    starts = list(range(warm, run.steps - chunk + 1, chunk))
    actual = run.energy_j[-1] - run.energy_j[0]
    errors = []
    for _ in range(FLOOR_DRAWS):
        picked = rng.sample(starts, min(len(starts), max(1, n // chunk)))
        energy = sum(run.energy_j[s + chunk] - run.energy_j[s] for s in picked)
        rate = energy / (chunk * len(picked))
        forecast = run.energy_j[warm] - run.energy_j[0] + rate * (run.steps - warm)
        errors.append(abs(forecast_error(forecast, actual)))
    return statistics.fmean(errors)


def _moved_window_error(run: TracedRun, first: Forecast, start: int) -> float:
    """|error| of the forecast whose per-step rate comes from the first window's length of
    steps starting at `start` instead of where the first window started."""
    warm, n = first.warmup_steps, max(1, first.profiled_steps)
    rate = (run.energy_j[start + n] - run.energy_j[start]) / n
    forecast = run.energy_j[warm] - run.energy_j[0] + rate * (run.steps - warm)
    return abs(forecast_error(forecast, run.energy_j[-1] - run.energy_j[0]))


def epoch_floor(run: TracedRun, first: Forecast) -> float:
    """Mean |error| of the forecast whose per-step rate comes from the first window's steps
    moved to the same place in each later epoch (issue 24's "a random 5% of the epochs
    instead of the first 5%", averaged over every epoch rather than drawn); NaN when the
    run has no epochs to move it to. Where 5% of the run is an epoch or less (the defaults:
    15 epochs) this is the issue's wording exactly; for longer runs the wording would
    scatter whole epochs, which the chunk floor (`noise_floor`) is closer to."""
    per = run.steps_per_epoch
    if not per:
        return math.nan
    warm, n = first.warmup_steps, max(1, first.profiled_steps)
    errors = [_moved_window_error(run, first, min(epoch_start + warm % per, run.steps - n))
              for epoch_start in range(per, run.steps, per)]  # the last epoch's ends at the end
    return statistics.fmean(errors) if errors else math.nan


def window_errors(run: TracedRun, first: Forecast) -> list[float]:
    """|error| of the forecast from a contiguous window as long as the first one, at every
    position after the warm-up (a quarter-window apart): the first window's errors rank
    among these as a random position's would unless its position matters (warm-up,
    caches, a loader starting), which is what the method can fix; the host's slow
    stretches hit windows at every position alike."""
    warm, n = first.warmup_steps, max(1, first.profiled_steps)
    return [_moved_window_error(run, first, start)
            for start in range(warm, run.steps - n + 1, max(1, n // 4))]


def _mean(values: list[float]) -> float:
    """The mean of the values that exist (a run without epochs has no epoch floor)."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.fmean(known) if known else math.nan


def rank(value: float, others: list[float]) -> float:
    """Share of `others` below `value` (ties count half): 0.5 on average for a draw of
    the same distribution."""
    if not others:
        return math.nan
    return (sum(o < value for o in others) + 0.5 * sum(o == value for o in others)) / len(others)


def epoch_ratios(run: TracedRun) -> list[float]:
    """Each epoch's energy over the run's median epoch: the host's slow stretches show as
    epochs well above 1 (the run's first window is one of these epochs or less)."""
    per = run.steps_per_epoch
    if not per:
        return []
    bounds = [*range(0, run.steps, per), run.steps]
    energies = [run.energy_j[b] - run.energy_j[a] for a, b in itertools.pairwise(bounds)
                if b - a == per]
    middle = statistics.median(energies) if energies else 0.0
    return [e / middle for e in energies] if middle > 0 else []


def emulated_run(label: str, steps_per_epoch: int, epochs: int, step_s: float,
                 seed: int) -> TracedRun:
    """One training run replayed through the emulated H200 (see the module docstring)."""
    from sweeper.energy import EnergySampler, NvmlMeter
    from tests.fake_nvml import CONTEXT_IDLE_W, Clock, EmulatedGpu, FakeNvml, _SignalBuilder, drive

    rng = random.Random(seed)
    b = _SignalBuilder(100.0, seed)
    b.noisy(CONTEXT_IDLE_W, 0.8, 3.0, (0.01, 0.04))  # the meter learns the refresh grid
    step_ends: list[float] = []
    epoch_edges: list[tuple[float, float]] = []
    drift = 1.0
    t_run = 0.0
    for _ in range(epochs):
        start = b.t_s
        for k in range(steps_per_epoch):
            ramp = math.exp(-t_run / 0.4)  # clocks and power ramp over about a second
            drift = min(max(drift * math.exp(rng.gauss(0.0, DRIFT)), 0.95), 1.05)
            if k == 0:  # the loader's first batch of the epoch
                b.hold(CONTEXT_IDLE_W, 0.030)
            dt = step_s * drift * (1.0 + 0.3 * ramp)
            b.noisy(312.0 * (1.0 - 0.4 * ramp), 90.0, dt, (0.002, 0.008))
            t_run += dt
            step_ends.append(b.t_s)
        epoch_edges.append((start, b.t_s))
        b.noisy(CONTEXT_IDLE_W, 0.8, 0.005, (0.002, 0.004))  # the recorder between epochs
    b.noisy(CONTEXT_IDLE_W, 0.8, 1.5, (0.01, 0.04))
    clock = Clock(100.0)
    gpu = EmulatedGpu(b.signal(), clock, seed=seed)
    meter = NvmlMeter(nvml=FakeNvml([gpu], driver="580.159.04"), clock=clock)
    clock.t = 101.5
    sampler = EnergySampler([meter], clock=clock, background=False).start()
    trace = StepTrace(sampler.checkpoint, clock)
    i = 0
    for e, (start, end) in enumerate(epoch_edges):
        drive(sampler, clock, start)
        if e == 0:
            trace.start()
        with sampler.phase("train_epoch", e):
            while i < len(step_ends) and step_ends[i] <= end + 1e-9:
                drive(sampler, clock, step_ends[i])
                i += 1
                trace.on_step(i)
    drive(sampler, clock, clock.t + 1.0)
    summary = sampler.stop()
    meter.close()
    span_s = min_span_s([meter])
    return TracedRun(label, trace.steps, trace.energy_j, trace.time_s, summary.source,
                     steps_per_epoch=steps_per_epoch, floors=(span_s / 2, span_s))


def emulated_runs(seeds: int) -> list[TracedRun]:
    """Four runs per seed: 100 or 400 steps per epoch of 20 or 50 ms, 15 epochs (30 s to
    5 min of training)."""
    return [emulated_run(f"h200 {steps}x{1000 * step_s:g}ms s{seed}", steps, 15, step_s,
                         seed * 100 + k)
            for seed in range(seeds)
            for k, (steps, step_s) in enumerate(itertools.product((100, 400), (0.02, 0.05)))]


def traced_run(
    model_name: str, batch: int, args: argparse.Namespace, data: object
) -> TracedRun:
    torch.manual_seed(args.seed)
    model = build_model(model_name, data.input_shape, data.num_classes)  # type: ignore[attr-defined]
    optimizer = make_optimizer("adam", model.parameters(), args.lr, 0.9, 0.0)
    device = torch.device(args.device)
    trainer = Trainer(model, optimizer, device, "fp32")
    loader = make_loader(data.train, batch, shuffle=True, seed=args.seed)  # type: ignore[attr-defined]
    gpus = [device.index or 0] if device.type == "cuda" else ()
    load_before = os.getloadavg()[0]
    meters = energy.open_meters(args.meter, gpu_indices=gpus)
    span_s = min_span_s(meters.meters)  # the run's profile floors (sweeper.run.prepare)
    sampler = energy.EnergySampler(meters.meters, sample_hz=args.sample_hz)
    trace = StepTrace(sampler.checkpoint)  # settled between slow refreshes by stop()
    with frozen_heap():  # as sweeper's measured runs do (sweeper.run.measured)
        sampler.start()
        try:
            trace.start()
            for _ in range(args.epochs):
                trainer.train_epoch(loader, trace.on_step)
        finally:
            summary = sampler.stop()
            meters.close()
    return TracedRun(f"{model_name} b{batch}", trace.steps, trace.energy_j, trace.time_s,
                     summary.source, (load_before, os.getloadavg()[0]), len(loader),
                     (span_s / 2, span_s))


def _share_within(errors: list[float], floor: float) -> float:
    """The share of ``errors`` within TARGET_FLOOR_RATIO x ``floor``."""
    return sum(e <= TARGET_FLOOR_RATIO * floor for e in errors) / len(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet", "vit", "mobilenet"])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--windows", nargs="+", type=float, default=[0.01, 0.05, 0.10, 0.20])
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="steps skipped before the window (config forecast.warmup_steps)")
    parser.add_argument("--meter", default="auto", choices=energy.CHOICES)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 keeps CPU time free of spin-waiting on busy hosts")
    parser.add_argument("--sample-hz", type=float, default=10.0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-epoch", action="store_true",
                        help="print each run's epoch energies over its median epoch")
    parser.add_argument("--emulated-h200", action="store_true",
                        help="replay runs through the emulated H200 (simulated clock)")
    parser.add_argument("--emulated-seeds", type=int, default=8,
                        help="seeds of the emulated runs (4 runs each)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.emulated_h200:
        runs = emulated_runs(args.emulated_seeds)
        where = "emulated H200, simulated clock"
    else:
        torch.set_num_threads(args.threads)
        data = load_dataset(args.dataset, seed=args.seed)
        runs = [traced_run(m, b, args, data)
                for m, b in itertools.product(args.models, args.batches)]
        where = f"{args.dataset}, {args.device}, {args.threads} thread(s)"
    windows = sorted(args.windows)

    header = f"{'run':<19} {'steps':>6} {'E_tr (J)':>9} " + " ".join(
        f"{w:>8.0%}" for w in windows) + (
        f"  {'floor':>7} {'/floor':>6} {'chunks':>7} {'/chunks':>7} {'rank':>5} "
        f"{'90% int':>7} {'load':>9}")
    print(f"forecast error of E_tr by profiling window ({where}, {args.warmup_steps} warm-up "
          f"steps or until settled, meter {runs[0].source}); floor: the window at the same "
          f"place in each later epoch (issue 24's 'random {TARGET_WINDOW:.0%} of the "
          f"epochs'); chunks: a random {TARGET_WINDOW:.0%} of the steps in 8 scattered "
          f"chunks, {FLOOR_DRAWS} draws (stricter); '90% int': the "
          f"{TARGET_WINDOW:.0%} window's interval covers the actual; 'rank': the first "
          f"{TARGET_WINDOW:.0%} window's |error| among contiguous windows of its length at "
          "every later position (50% on average where its position does not matter)")
    print(header)
    errors: dict[float, list[float]] = {w: [] for w in windows}
    time_errors: dict[float, list[float]] = {w: [] for w in windows}
    floors: list[float] = []  # issue 24's: the window in each later epoch
    chunk_floors: list[float] = []  # a random 5% of the steps in scattered chunks
    covered: list[bool] = []
    ranks: list[float] = []
    positions_within: list[float] = []  # per run: share of positions within 1.5x floor
    epoch_within: list[float] = []  # ... within 1.5x the run's epoch floor (issue 24's)
    for n, run in enumerate(runs):
        actual_j = run.energy_j[-1] - run.energy_j[0]
        actual_s = run.time_s[-1] - run.time_s[0]
        cells = []
        for w in windows:
            f = forecast_from_trace(run.energy_j, run.time_s, w, args.warmup_steps,
                                    **run.options)
            errors[w].append(forecast_error(f.energy_j, actual_j))
            time_errors[w].append(forecast_error(f.duration_s, actual_s))
            cells.append(f"{errors[w][-1]:>+8.1%}")
        main_f = forecast_from_trace(run.energy_j, run.time_s, TARGET_WINDOW, args.warmup_steps,
                                     **run.options)
        floors.append(epoch_floor(run, main_f))
        chunk_floors.append(noise_floor(run, TARGET_WINDOW, args.warmup_steps,
                                        args.seed * 1000 + n))
        inside = (main_f.energy_low_j is not None and main_f.energy_high_j is not None
                  and main_f.energy_low_j <= actual_j <= main_f.energy_high_j)
        covered.append(inside)
        main_err = abs(forecast_error(main_f.energy_j, actual_j))
        positions = window_errors(run, main_f)
        ranks.append(rank(main_err, positions))
        if positions:
            positions_within.append(_share_within(positions, chunk_floors[-1]))
            if not math.isnan(floors[-1]):
                epoch_within.append(_share_within(positions, floors[-1]))
        load = "-" if args.emulated_h200 else f"{run.load[0]:.1f}-{run.load[1]:.1f}"
        print(f"{run.label:<19} {run.steps:>6} {actual_j:>9.1f} " + " ".join(cells)
              + f"  {floors[-1]:>7.1%} {main_err / max(floors[-1], 1e-9):>6.1f} "
              f"{chunk_floors[-1]:>7.1%} {main_err / max(chunk_floors[-1], 1e-9):>7.1f} "
              f"{ranks[-1]:>5.0%} {'yes' if inside else 'no':>7} {load:>9}")
    print(f"{'MAPE E_tr':<36} " + " ".join(
        f"{statistics.fmean(abs(e) for e in errors[w]):>8.1%}" for w in windows)
        + f"  {_mean(floors):>7.1%} {'':>6} {statistics.fmean(chunk_floors):>7.1%}")
    print(f"{'MAPE time':<36} " + " ".join(
        f"{statistics.fmean(abs(e) for e in time_errors[w]):>8.1%}" for w in windows))
    if TARGET_WINDOW in errors:
        mape = statistics.fmean(abs(e) for e in errors[TARGET_WINDOW])
        verdict = "met" if mape <= TARGET_MAPE else "NOT met"
        print(f"target MAPE <= {TARGET_MAPE:.0%} with a {TARGET_WINDOW:.0%} window: "
              f"{mape:.1%} ({verdict}); {len(runs)} runs in {time.perf_counter() - started:.0f} s")
        if args.emulated_h200:
            ok = mape <= TARGET_EMULATED_MAPE
            print(f"issue 24, emulated H200: MAPE <= {TARGET_EMULATED_MAPE:.0%}: {mape:.1%} "
                  f"({'met' if ok else 'NOT met'})")
        else:
            first = [abs(e) for e in errors[TARGET_WINDOW]]
            within = sum(e <= TARGET_FLOOR_RATIO * f for e, f in zip(first, floors, strict=True))
            strict = sum(e <= TARGET_FLOOR_RATIO * f
                         for e, f in zip(first, chunk_floors, strict=True))
            verdict = "met" if within == len(runs) else "NOT met"
            print(f"issue 24, CPU: error <= {TARGET_FLOOR_RATIO}x the run's noise floor (the "
                  f"window in each later epoch) in {within} of {len(runs)} runs ({verdict}); "
                  f"<= {TARGET_FLOOR_RATIO}x the stricter chunk floor in {strict} of "
                  f"{len(runs)}")
            if not math.isnan(_mean(floors)):  # the MAPE against the runs' mean floors
                mape_first, chunk = statistics.fmean(first), statistics.fmean(chunk_floors)
                ratio = mape_first / max(_mean(floors), 1e-12)
                print(f"  over the runs: MAPE {mape_first:.1%} against a mean floor of "
                      f"{_mean(floors):.1%} ({ratio:.2f}x, "
                      f"{'within' if ratio <= TARGET_FLOOR_RATIO else 'above'} "
                      f"{TARGET_FLOOR_RATIO}x) and a mean chunk floor of {chunk:.1%} "
                      f"({mape_first / max(chunk, 1e-12):.2f}x)")
            if positions_within:
                share = statistics.fmean(positions_within)
                print(f"  a window of the same length at a random later position is within "
                      f"{TARGET_FLOOR_RATIO}x the chunk floor in {share:.0%} of positions (runs: "
                      f"{min(positions_within):.0%}-"
                      f"{max(positions_within):.0%}): what a first window with no positional "
                      f"effect would score; the first window's rank among them: mean "
                      f"{statistics.fmean(ranks):.0%} (50% expected), "
                      + " ".join(f"{r:.0%}" for r in ranks))
            if len(epoch_within) == len(runs):
                print(f"  against each run's epoch floor such a window is within "
                      f"{TARGET_FLOOR_RATIO}x in {statistics.fmean(epoch_within):.0%} of "
                      f"positions (runs: {min(epoch_within):.0%}-{max(epoch_within):.0%}), so "
                      f"it would pass all {len(runs)} runs in {math.prod(epoch_within):.0%} of "
                      "benchmarks: the per-run test's own noise")
        share = sum(covered) / len(covered)
        n = len(covered)  # how often an exactly calibrated 90% interval lands in 80-97% here
        chance = sum(math.comb(n, k) * 0.9 ** k * 0.1 ** (n - k)
                     for k in range(n + 1) if 0.8 <= k / n <= 0.97)
        print(f"90% interval covers the actual E_tr in {sum(covered)} of {n} runs "
              f"({share:.0%}; target 80-97%: {'met' if 0.8 <= share <= 0.97 else 'NOT met'}; "
              f"an exactly calibrated 90% interval meets it over {n} runs in {chance:.0%} of "
              "benchmarks)")
    if args.per_epoch:
        print("energy of each epoch over the run's median epoch (a profile of the first "
              "window sees only the first of these):")
        for run in runs:
            print(f"  {run.label:<17} " + " ".join(f"{x:.2f}" for x in epoch_ratios(run)))
    load_now = os.getloadavg()
    print(f"load average at the end: {load_now[0]:.2f} {load_now[1]:.2f} {load_now[2]:.2f}")
    if "estimate" in runs[0].source:
        print("energy from the estimate meter (CPU time x rated power): relative, not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
