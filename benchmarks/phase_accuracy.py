"""How close are phase energies to the truth on an NVIDIA H200, before and after
refresh-aware attribution?

Runs on the emulated H200 of tests/fake_nvml.py (the recording's levels and shapes, counter
and power refreshing every ~100 ms with the recording's jitter), where the exact integral of
the power is known, with a real NvmlMeter and EnergySampler on a simulated clock (so the
machine's load does not matter). Each cell pools several seeds (each moves the refresh grid,
the gaps and the noise). Side by side:

* today: the difference of the counter reads at the boundaries (sweeper at 0dbaca6);
* even: each boundary interpolated evenly between the refreshes on either side (sweeper
  at e9a881e; here the same sampler told nothing of where phases begin and end);
* new: each refresh's energy split where the work is (sweeper.energy.attribution).

Two placements:

* phases that are the work (the issue's case, and sweeper's: work is launched after a phase
  opens and synchronised before it closes). The stretch's load (idle, heavy matmul, 30 ms
  bursts, 50 ms pulses, small-net training) runs for the phase, starting 1-5 ms after it
  opens; the GPU decays over ~30 ms to context idle after it; gaps are 1-10 ms (back to
  back) or 20-400 ms. Targets (issue 11): within 1% for phases >= 1 s, 3% at 0.3 s, 15% at
  50 ms.
* an epoch loop, as sweeper runs one: 1 s of small-net training, then an evaluation of
  10 ms (the recording's 7-13 ms), 50 ms or 0.3 s at heavy load, back to back (1-5 ms
  apart), six epochs; training and evaluation phases are scored apart.
* the real H200 recording replayed (tests/fake_nvml.py RecordedGpu): its ten 50 ms
  pulses and 4 s loads as phases at the load process's marks, against the counter over
  whole refreshes (which includes the decay after each phase: no exact truth there).
* windows cut at random offsets through the recorded session's continuous load, as a
  profile window would be if it did not synchronise. Power does not step at their edges,
  so attributing by where the work is does not hold; shown for what it costs.

"met" says whether the mean and the worst phase are within the target; "+-unc" is the mean
stated uncertainty (% of the phase's energy), "covers" the share of phases whose truth
lies within it, "width" the median stated uncertainty over the median error, and
"calibrated" whether covers is 90-99% and width at most 3 (issue 24; the stored uncertainty
is a 95% interval, 1.96 standard deviations of the error model in
sweeper/energy/attribution.py, whose width is 2.9 times the median error for a normal
error; a cell of 60 phases moves by about 3 points of coverage and 15% of width from
sampling alone, so the summary also says how many cells an exactly calibrated normal
error model would pass, and how rarely it would pass all of them: `--seeds 24` pools four
times as many). "miss" says whether a cell
that misses does so by no more than such a model's cells of its size do at least 2.5% of
the time ("chance"), or by more ("model": the +- does not follow the errors there).

    python benchmarks/phase_accuracy.py [--seeds 6] [--first-seed 0] [--phases 10]

(``--first-seed`` runs another set of seeds: how far the counts move between disjoint sets
is the benchmark's own noise. ``--boundaries`` shows only where the errors of heavy 0.3 s
and bursty 0.3 s and 1 s come from: each phase boundary as the sampler settled it, by
whether its neighbour is back to back and whether another boundary shares its refresh.)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeper.energy.refresh import COVERAGE_Z  # noqa: E402  (the stored +- is this many sd)
from tests.fake_nvml import (  # noqa: E402
    PhaseScore,
    epoch_session,
    load_recording,
    measure_boundaries,
    measure_phases,
    measure_recording,
    measure_session,
    measure_work_phases,
    work_session,
)

KINDS = ("idle", "heavy", "bursty", "pulsed", "train_small")
LENGTHS_S = (0.05, 0.3, 1.0, 3.0)
TARGET = {0.05: 0.15, 0.3: 0.03, 1.0: 0.01, 3.0: 0.01}
# issue 24: the stored +- covers this share of phases, at most this many median errors wide
COVERS_LO, COVERS_HI, MAX_WIDTH = 0.90, 0.99, 3.0


@contextlib.contextmanager
def even_split() -> Iterator[None]:
    """The sampler as before attribution: the meter is not told where phases are."""
    from sweeper.energy.nvml import NvmlMeter

    mark = NvmlMeter.mark_boundary
    NvmlMeter.mark_boundary = lambda self, t_s, edge: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        NvmlMeter.mark_boundary = mark  # type: ignore[method-assign]


def _stated(scores: list[PhaseScore]) -> float:
    """The mean stated uncertainty, % of the phase's energy."""
    return 100 * statistics.fmean(s.uncertainty_j / s.true_j for s in scores)


def _calibration(scores: list[PhaseScore]) -> tuple[float, float]:
    """The share of phases whose truth lies within the stated uncertainty, and the median
    stated uncertainty over the median error (issue 24: 90-99% and at most 3)."""
    covered = sum(abs(s.final_j - s.true_j) <= s.uncertainty_j for s in scores) / len(scores)
    median_error_j = statistics.median(abs(s.final_j - s.true_j) for s in scores)
    width = statistics.median(s.uncertainty_j for s in scores) / max(median_error_j, 1e-12)
    return covered, width


def _rescale_range(scores: list[PhaseScore]) -> tuple[float, float]:
    """The factors k by which the cell's stated uncertainty could be scaled and pass: from
    the 90th percentile of |error| / +- (k at least that covers 90%) to 3 x the median error
    over the median +- (k at most that keeps the width at 3), and below the ratio that
    would cover more than 99%. Empty (lo > hi) when no rescaling passes: then the +- does
    not follow how the errors spread across phases, whatever its level."""
    ratios = sorted(abs(s.final_j - s.true_j) / max(s.uncertainty_j, 1e-12) for s in scores)
    n = len(ratios)
    lo = ratios[min(n - 1, math.ceil(COVERS_LO * n) - 1)]
    median_error_j = statistics.median(abs(s.final_j - s.true_j) for s in scores)
    hi = MAX_WIDTH * median_error_j / max(statistics.median(s.uncertainty_j for s in scores),
                                          1e-12)
    if math.floor(COVERS_HI * n) < n:  # at most 99% covered: some ratio stays above k
        hi = min(hi, math.nextafter(ratios[math.floor(COVERS_HI * n)], 0.0))
    return lo, hi


@functools.cache  # one draw per cell size: cells share their sizes
def _calibrated_draws(n: int, draws: int = 20_000) -> tuple[Any, Any]:
    """Coverage and width of ``draws`` cells of ``n`` phases whose stated +- is exactly a
    normal error's 95% interval (one sd for the cell)."""
    import numpy as np

    errors = np.abs(np.random.default_rng(n).standard_normal((draws, n)))
    return (errors <= COVERAGE_Z).mean(axis=1), COVERAGE_Z / np.median(errors, axis=1)


def chance_calibrated(n: int) -> float:
    """How often a cell of ``n`` phases passes the calibration test when the stated +- is
    exactly a normal error's 95% interval: the test's own noise, against which the count
    of calibrated cells is read."""
    covered, width = _calibrated_draws(n)
    return float(((covered >= COVERS_LO) & (covered <= COVERS_HI) & (width <= MAX_WIDTH))
                 .mean())


def miss_kind(n: int, covered: float, width: float, tail: float = 0.025) -> str:
    """Why a cell of ``n`` phases misses the calibration test: "-" (it does not),
    "chance" (an exactly calibrated model's cells miss that way at least ``tail`` of the
    time: under 90% or over 99% covered, or wider than 3, by that much or more) or
    "model" (fewer: the +- does not follow the errors)."""
    if _calibrated(covered, width) == "yes":
        return "-"
    sim_covered, sim_width = _calibrated_draws(n)
    eps = 0.5 / n  # the observed share is a count out of n
    rare = ((covered < COVERS_LO and (sim_covered <= covered + eps).mean() < tail)
            or (covered > COVERS_HI and (sim_covered >= covered - eps).mean() < tail)
            or (width > MAX_WIDTH and (sim_width >= width).mean() < tail))
    return "model" if rare else "chance"


def _calibrated(covered: float, width: float) -> str:
    return "yes" if COVERS_LO <= covered <= COVERS_HI and width <= MAX_WIDTH else "no"


def _errors(scores: list[PhaseScore]) -> list[float]:
    return [100 * abs(s.final_error) for s in scores]


def table(title: str, measure: Callable[..., list[PhaseScore]], seeds: range, n: int) -> None:
    print(f"\n{title}")
    print(f"{'stretch':<12}{'length':>7}{'n':>5}  {'today':>7}{'worst':>7}  {'even':>6}"
          f"{'worst':>7}  {'new':>6}{'worst':>7}  {'target':>6}  {'met':>9}  {'+-unc':>6}"
          f"{'covers':>7}{'width':>6}  calibrated  {'rescaled by':>11}  miss")
    calibrated = rescalable = by_chance = 0
    expected = 0.0  # cells an exactly calibrated normal model would pass
    every = 1.0  # how often it would pass them all
    for kind in KINDS:
        for length_s in LENGTHS_S:
            scores: list[PhaseScore] = []
            evens: list[PhaseScore] = []
            for seed in seeds:
                scores += measure(kind, length_s, n, seed=seed)
                with even_split():
                    evens += measure(kind, length_s, n, seed=seed)
            old = [100 * abs(s.read_error) for s in scores]
            even, new = _errors(evens), _errors(scores)
            covered, width = _calibration(scores)
            calibrated += _calibrated(covered, width) == "yes"
            chance = chance_calibrated(len(scores))
            expected += chance
            every *= chance
            miss = miss_kind(len(scores), covered, width)
            by_chance += miss == "chance"
            k_lo, k_hi = _rescale_range(scores)
            rescalable += k_lo <= k_hi
            rescale = f"{k_lo:.2f}-{k_hi:.2f}" if k_lo <= k_hi else "none"
            target = 100 * TARGET[length_s]
            met = "yes" if max(new) <= target else (
                "mean only" if statistics.fmean(new) <= target else "no")
            print(f"{kind:<12}{length_s:>6g}s{len(scores):>5}  "
                  f"{statistics.fmean(old):>6.1f}%{max(old):>6.0f}%  "
                  f"{statistics.fmean(even):>5.2f}%{max(even):>6.1f}%  "
                  f"{statistics.fmean(new):>5.2f}%{max(new):>6.1f}%  {target:>5.0f}%  "
                  f"{met:>9}  {_stated(scores):>5.1f}%{100 * covered:>6.0f}%{width:>6.1f}  "
                  f"{_calibrated(covered, width):<10}  {rescale:>11}  {miss}")
    cells = len(KINDS) * len(LENGTHS_S)
    print(f"uncertainty calibrated (covers 90-99%, width at most 3x the median error) in "
          f"{calibrated} of {cells} cells; the stored +- is a 95% interval (a normal "
          f"error's is 2.9x its median), and an exactly calibrated normal error model "
          f"would pass {expected:.1f} of them on average (a cell of {len(seeds) * n} phases: "
          f"{chance_calibrated(len(seeds) * n):.0%}), and all {cells} "
          + (f"in one benchmark of {1 / every:,.0f}" if every > 0 else
             "never (a cell this small cannot be 90-99% covered)"))
    print(f"'rescaled by': the factors on the +- that would pass the cell; some do in "
          f"{rescalable} of {cells} cells, none in {cells - rescalable} (there the +- "
          "does not follow how the errors spread across phases: no level of it passes)")
    print(f"'miss': of the {cells - calibrated} cells that miss, {by_chance} miss by no "
          "more than an exactly calibrated model's cells of that size do at least 2.5% of "
          f"the time ('chance'); {cells - calibrated - by_chance} miss by more ('model')")


def epochs(seeds: range) -> None:
    print("\nan epoch loop: 1 s training, then evaluation at heavy load, back to back")
    print(f"{'phase':<22}{'n':>5}  {'today':>7}{'worst':>7}  {'even':>6}{'worst':>7}  "
          f"{'new':>6}{'worst':>7}  {'+-unc':>6}{'covers':>7}{'width':>6}  calibrated")
    for eval_s in (0.01, 0.05, 0.3):
        scores: list[PhaseScore] = []
        evens: list[PhaseScore] = []
        for seed in seeds:
            scores += measure_session(epoch_session(eval_s, epochs=6, seed=seed), seed)
            with even_split():
                evens += measure_session(epoch_session(eval_s, epochs=6, seed=seed), seed)
        for kind, name in (("train_small", "training 1 s"), ("heavy", f"evaluation {eval_s:g} s")):
            got = [s for s in scores if s.stretch == kind]
            old = [100 * abs(s.read_error) for s in got]
            even = _errors([s for s in evens if s.stretch == kind])
            new = _errors(got)
            covered, width = _calibration(got)
            print(f"{name:<22}{len(got):>5}  {statistics.fmean(old):>6.1f}%{max(old):>6.0f}%  "
                  f"{statistics.fmean(even):>5.2f}%{max(even):>6.1f}%  "
                  f"{statistics.fmean(new):>5.2f}%{max(new):>6.1f}%  "
                  f"{_stated(got):>5.1f}%{100 * covered:>6.0f}%{width:>6.1f}  "
                  f"{_calibrated(covered, width)}")


def boundaries(seeds: range, n: int, cells: list[tuple[str, float]]) -> None:
    """Where the cells' errors come from: each phase boundary as the sampler settled it,
    its cumulative energy's error against the stated +-, by whether the phase next to it
    is back to back (within 11 ms) and whether another boundary shares its refresh."""
    print("\nphase boundaries, as the sampler settled them (error of the cumulative energy)")
    print(f"{'stretch':<12}{'length':>7}  {'edge':<6}{'neighbour':<14}{'refresh':<9}{'n':>5}"
          f"{'covers':>8}{'median err':>12}{'mean signed':>13}{'median +-':>11}{'width':>7}")
    for kind, length_s in cells:
        scores = [b for seed in seeds
                  for b in measure_boundaries(work_session(kind, length_s, n, seed=seed), seed)]
        groups: dict[tuple[str, bool, bool], list[Any]] = {}
        for b in scores:
            groups.setdefault((b.edge, b.back_to_back, b.shares_refresh), []).append(b)
        for (edge, b2b, shared), got in sorted(groups.items()):
            errors = [abs(b.error_j) for b in got]
            covered = sum(abs(b.error_j) <= b.uncertainty_j for b in got) / len(got)
            med_err = statistics.median(errors)
            med_unc = statistics.median(b.uncertainty_j for b in got)
            print(f"{kind:<12}{length_s:>6g}s  {edge:<6}"
                  f"{'back to back' if b2b else '20-400 ms':<14}"
                  f"{'shared' if shared else 'alone':<9}{len(got):>5}{100 * covered:>7.0f}%"
                  f"{med_err:>10.2f} J{statistics.fmean(b.error_j for b in got):>+11.2f} J"
                  f"{med_unc:>9.2f} J{med_unc / max(med_err, 1e-12):>7.1f}")


def recording() -> None:
    """The real H200 recording replayed (its counter, power and refresh times as polled every
    ~5 ms): the load process's ten 50 ms pulses and its 4 s loads as phases at its marks.
    No exact truth exists there; the reference is the counter over whole refreshes, less the
    idle power measured before, so it includes the work's decay after the phase."""
    rec = load_recording()
    m = rec.marks
    print("\nthe real H200 recording, replayed: phases at the load process's marks")
    print(f"{'phase':<22}{'today':>9}{'even':>9}{'new':>9}{'+-unc':>8}{'reference':>11}"
          "  (reference: with the decay after it)")
    pulses = [(f"pulse {k}", m[f"pulse{k}_start"], m[f"pulse{k}_end"]) for k in range(10)]
    loads = [(name, m[f"{name}_start"], m[f"{name}_end"])
             for name in ("heavy", "bursty", "train_small")]
    windows = sorted(loads + pulses, key=lambda w: w[1])  # in time order, as measured
    new = measure_recording(windows, rec)
    with even_split():
        even = measure_recording(windows, rec)
    for (name, start, end), (_, read_j, new_j, unc_j), (_, _, even_j, _) in zip(
            windows, new, even, strict=True):
        # pulse 0 and train_small touch (one starts as the other ends): no clean idle
        alone = name not in ("pulse 0", "train_small")
        ref = f"{rec.energy_above_idle_j(start, end)[0]:>9.1f} J" if alone else "        -"
        print(f"{name + f' ({1000 * (end - start):.0f} ms)':<22}{read_j:>7.1f} J"
              f"{even_j:>7.1f} J{new_j:>7.1f} J{unc_j:>6.1f} J{ref}")
    pulse_new = [row for row in new if row[0].startswith("pulse")]
    pulse_even = [row for row in even if row[0].startswith("pulse")]
    for label, values in (("today", [read_j for _, read_j, _, _ in pulse_new]),
                          ("even", [even_j for _, _, even_j, _ in pulse_even]),
                          ("new", [new_j for _, _, new_j, _ in pulse_new])):
        print(f"ten identical pulses, {label:<5}: mean {statistics.fmean(values):5.1f} J, "
              f"sd {statistics.stdev(values):4.1f} J")
    print("as a GPU without the energy counter would measure the 4 s loads (power integrated):")
    for name, start, end in loads[:2]:  # train_small touches pulse 0: no clean reference
        reference_j = rec.energy_above_idle_j(start, end)[0]
        cells = []
        for label, has_instant in (("instant field", True), ("GetPowerUsage", False)):
            ((_, _, got_j, unc_j),) = measure_recording(
                [(name, start, end)], rec, has_counter=False, has_instant=has_instant)
            cells.append(f"{label} {100 * (got_j / reference_j - 1):+.1f}% "
                         f"(+-{100 * unc_j / reference_j:.0f}% stated)")
        print(f"  {name:<8}" + ", ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--boundaries", action="store_true",
                        help="only the per-boundary view of the cells that miss by the model")
    parser.add_argument("--phases", type=int, default=10, help="phases per cell and seed")
    args = parser.parse_args()
    t0 = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.boundaries:
        boundaries(seeds, args.phases, [("heavy", 0.3), ("bursty", 0.3), ("bursty", 1.0)])
        print(f"({time.perf_counter() - t0:.1f} s)")
        return
    print(f"emulated NVIDIA H200, {args.seeds} seeds (from {args.first_seed}) x up to "
          f"{args.phases} phases per cell; abs error % of the exact integral")
    table("phases that are the work (targets apply)", measure_work_phases, seeds,
          args.phases)
    epochs(seeds)
    recording()
    table("windows cut through continuous load (no step at their edges)", measure_phases,
          seeds, args.phases)
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
