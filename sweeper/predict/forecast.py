"""The study's first finding as a feature: a short profile forecasts the whole run.

After warm-up steps are skipped, the energy and time of a window of training steps
give a per-step rate; the rest of training is extrapolated from it.

What makes a first window unrepresentative is a transient at the start: clocks and power
ramping, allocator and cache warm-up, the data loader's first batches (issue 24). Warm-up
therefore lasts until the per-step energy has settled (two consecutive blocks of the
window's steps agree within ``settle_tol``), not only a fixed number of steps, and the
transient is measured rather than extrapolated. The forecast carries a 90% interval: the
window's per-step rate is known to its standard error, from how the rate of its chunks
scatters (a Student t on their count); what changes after the window (host speed drifting,
a schedule that changes the work per step) is not in it, which the benchmark's measured
coverage shows.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Settling(Protocol):
    """A reading whose energy may be refined after it was taken (a sampler checkpoint,
    settled between a slow counter's refreshes once they are seen)."""

    @property
    def energy_j(self) -> float: ...


Reading = float | Settling


def joules(reading: Reading) -> float:
    return float(reading) if isinstance(reading, int | float) else reading.energy_j


SETTLE_TOL = 0.01  # per-step energy of two blocks agreeing this well: the transient is over
SETTLE_MAX_WINDOWS = 2  # warm-up is extended by at most this many windows' steps
CHUNKS = 8  # the window's chunks whose scatter gives the rate's standard error
INTERVAL = 0.90


@dataclass(frozen=True)
class Forecast:
    window: float
    warmup_steps: int
    profiled_steps: int
    total_steps: int
    energy_j: float
    duration_s: float
    # the 90% interval of energy_j, from the window's chunks (None: too few to say)
    energy_low_j: float | None = None
    energy_high_j: float | None = None


def window_steps(total_steps: int, window: float) -> int:
    return max(1, math.ceil(total_steps * window))


def epoch_window_steps(steps: int, steps_per_epoch: int | None) -> int:
    """A window of at least ``steps``, as whole epochs when an epoch is at most twice its
    length: every epoch starts with its own cost (the loader's first batches, an epoch's
    first step), and a window inside one epoch holds none of the later ones."""
    if not steps_per_epoch or steps_per_epoch > 2 * steps:
        return steps
    return math.ceil(steps / steps_per_epoch) * steps_per_epoch


def extrapolate(
    *,
    total_steps: int,
    warmup_steps: int,
    profiled_steps: int,
    warmup_energy_j: float,
    warmup_duration_s: float,
    profile_energy_j: float,
    profile_duration_s: float,
    window: float,
    chunk_rates_j: Sequence[float] = (),
    chunk_steps: int = 1,
    transient_j: float = 0.0,
) -> Forecast:
    """Measured warm-up plus the profiled per-step rate for every remaining step; with the
    per-step energy of the window's chunks (of ``chunk_steps`` steps), the 90% interval of
    the forecast: the rate to its standard error, the remaining steps' own scatter, and a
    transient the warm-up may have left in the window (per step, up to ``transient_j``:
    the last difference between blocks it accepted)."""
    remaining = total_steps - warmup_steps
    energy_j = warmup_energy_j + profile_energy_j / profiled_steps * remaining
    low = high = None
    if len(chunk_rates_j) >= 3:
        n = len(chunk_rates_j)
        var_chunk = statistics.variance(chunk_rates_j)
        later = max(remaining - profiled_steps, 0)
        sd_j = math.sqrt(var_chunk / n * remaining**2  # the window's rate
                         + var_chunk * chunk_steps * later  # the later steps' own scatter
                         + (transient_j * remaining) ** 2 / 3.0)  # uniform within it
        half_j = t_quantile(0.5 + INTERVAL / 2, n - 1) * sd_j
        low, high = energy_j - half_j, energy_j + half_j
    return Forecast(
        window=window,
        warmup_steps=warmup_steps,
        profiled_steps=profiled_steps,
        total_steps=total_steps,
        energy_j=energy_j,
        duration_s=warmup_duration_s + profile_duration_s / profiled_steps * remaining,
        energy_low_j=low,
        energy_high_j=high,
    )


def t_quantile(p: float, dof: int) -> float:
    """Student t quantile, by the Cornish-Fisher expansion around the normal's (1.2% low at
    2 degrees of freedom, within 0.3% from 3 on). Not scipy's: importing scipy.stats
    costs seconds of CPU, which a window closing inside a training epoch would charge to
    training."""
    z = statistics.NormalDist().inv_cdf(p)
    n = float(max(dof, 1))
    return (z + (z**3 + z) / (4 * n) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3))


class ProfileWindow:
    """Step hook that takes exact energy readings at the window's edges.

    Both edges have a time floor as well as a step count. Warm-up lasts at least
    `warmup_steps` and `warmup_seconds`: a GPU's clocks and power ramp up over about a
    second, so a profile of the first steps after a 2-step warm-up reads low (on an H200 a
    width-64 ResNet's 5% window forecast -8.5% and -18%); the ramp is then a measured term
    of its own, not extrapolated. After that it goes on, a block of half a window at a time
    (at most ``SETTLE_MAX_WINDOWS`` windows), until two consecutive blocks' per-step energy
    agree within ``settle_tol``: a transient longer than the floors (allocator, caches, the
    loader's first batches) is measured too. The window lasts at least its fraction of the
    steps and `min_seconds`, so it spans many refreshes of the meter (NVML: ~100 ms); it
    never runs past the last step, where the "forecast" is the measurement itself. With
    ``steps_per_epoch`` it covers whole epochs when an epoch is at most twice its length
    (``epoch_window_steps``).

    ``read_energy_j`` returns joules, or a reading that settles later: ``result`` is the
    forecast from the values at hand when the window closes (what early stopping can act
    on), ``settled()`` the same forecast from the values as they are when it is asked
    (after the run: each edge settled between a slow counter's refreshes).
    """

    def __init__(
        self,
        total_steps: int,
        window: float,
        warmup_steps: int,
        read_energy_j: Callable[[], Reading],
        clock: Callable[[], float] = time.perf_counter,
        *,
        warmup_seconds: float = 0.0,
        min_seconds: float = 0.0,
        settle_tol: float = SETTLE_TOL,
        steps_per_epoch: int | None = None,
    ) -> None:
        self.total_steps = total_steps
        self.window = window
        # Short runs cannot spare warm-up steps: keep at least one step to profile.
        self.warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
        self.profiled_steps = min(
            epoch_window_steps(window_steps(total_steps, window), steps_per_epoch),
            total_steps - self.warmup_steps,
        )
        self.warmup_seconds = warmup_seconds
        self.min_seconds = min_seconds
        self.settle_tol = settle_tol
        self._read = read_energy_j
        self._clock = clock
        self._origin: tuple[Reading, float] | None = None
        self._warm: tuple[Reading, float] | None = None
        self._warm_step = 0
        self._end: tuple[Reading, float, int] | None = None
        # readings every chunk of the window's steps once the floors are met: (step, reading)
        self._chunk = max(1, self.profiled_steps // CHUNKS)
        # marks per settling block: half a window (0: too short to settle)
        self._block = (self.profiled_steps // 2) // self._chunk
        self._marks: list[tuple[int, Reading, float]] = []
        self._transient_j = 0.0  # per step: what a transient may have left in the window
        self._settle_until = min(self.warmup_steps + SETTLE_MAX_WINDOWS * self.profiled_steps,
                                 max(total_steps - self.profiled_steps, self.warmup_steps))
        self.result: Forecast | None = None

    def start(self) -> None:
        """Call when training starts (step 0)."""
        self._origin = (self._read(), self._clock())
        if self.warmup_steps == 0 and self.warmup_seconds <= 0:
            self._mark(0)

    def _mark(self, step: int) -> None:
        self._marks.append((step, self._read(), self._clock()))
        if self._warm is None:
            self._try_settle()

    def _try_settle(self) -> None:
        """Warm-up ends at the first mark whose next two blocks (of half a window) agree
        per step within settle_tol, or within what their chunks' scatter allows (two
        standard errors of the difference: noise is no transient), or at the cap; the
        window then starts there."""
        marks, block = self._marks, self._block
        first = marks[0][0]
        if block == 0:  # a window too short to compare two halves of
            self._begin(0)
            return
        rates = [(joules(rb) - joules(ra)) / (sb - sa)
                 for (sa, ra, _), (sb, rb, _) in zip(marks, marks[1:], strict=False)]
        for i in range(0, len(marks) - 2 * block, block):
            a, b = rates[i:i + block], rates[i + block:i + 2 * block]
            mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
            # the blocks' difference, against what their chunks' scatter allows (2 se)
            noise = 2.0 * math.sqrt((statistics.variance(a) / len(a) if len(a) > 1 else 0.0)
                                    + (statistics.variance(b) / len(b) if len(b) > 1 else 0.0))
            allowed = max(self.settle_tol * abs(mean_b), noise)
            if marks[i][0] >= self._settle_until or abs(mean_a - mean_b) <= allowed:
                self._transient_j = abs(mean_a - mean_b) if i > 0 or self._block else 0.0
                self._begin(i)
                return
        last = marks[-1][0]
        if self.settle_tol > 0 and last >= self._settle_until and last > first:
            self._begin(len(marks) - 1)  # the cap: the window starts here

    def _begin(self, i: int) -> None:
        step, reading, t_s = self._marks[i]
        self._warm, self._warm_step = (reading, t_s), step
        self._marks = self._marks[i:]

    def on_step(self, step: int) -> None:
        if self.result is not None or self._origin is None or self.profiled_steps <= 0:
            return
        if not self._marks:  # the floors first
            last_warm_step = max(self.total_steps - 1, 0)  # leave one step to profile
            if step >= self.warmup_steps and (
                step >= last_warm_step or self._clock() - self._origin[1] >= self.warmup_seconds
            ):
                self._mark(step)
                if step >= last_warm_step and self._warm is None:
                    self._begin(0)
            return
        if self._warm is None:
            if (step - self._marks[-1][0]) % self._chunk == 0 or step >= self.total_steps - 1:
                self._mark(step)
                if self._warm is None and step >= self.total_steps - 1:
                    self._begin(len(self._marks) - 1)
            if self._warm is None:
                return
        if step > self._marks[-1][0] and (step - self._warm_step) % self._chunk == 0:
            self._marks.append((step, self._read(), self._clock()))
        if step < min(self._warm_step + self.profiled_steps, self.total_steps):
            return
        if step < self.total_steps and self._clock() - self._warm[1] < self.min_seconds:
            return
        if self._marks[-1][0] != step:
            self._marks.append((step, self._read(), self._clock()))
        self._end = (self._marks[-1][1], self._marks[-1][2], step)
        self.result = self.settled()

    def settled(self) -> Forecast | None:
        """The forecast from the window's edges as they read now (None before it closed)."""
        if self._origin is None or self._warm is None or self._end is None:
            return None
        origin_j, warm_j, end_j = (joules(r[0]) for r in (self._origin, self._warm, self._end))
        step = self._end[2]
        inside = [(s, joules(r)) for s, r, _ in self._marks if self._warm_step <= s <= step]
        rates = [(b - a) / (sb - sa) for (sa, a), (sb, b) in zip(inside, inside[1:],
                                                                 strict=False) if sb > sa]
        return extrapolate(
            total_steps=self.total_steps,
            warmup_steps=self._warm_step,
            profiled_steps=step - self._warm_step,
            warmup_energy_j=warm_j - origin_j,
            warmup_duration_s=self._warm[1] - self._origin[1],
            profile_energy_j=end_j - warm_j,
            profile_duration_s=self._end[1] - self._warm[1],
            window=self.window,
            chunk_rates_j=rates,
            chunk_steps=self._chunk,
            transient_j=self._transient_j,
        )
