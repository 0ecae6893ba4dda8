"""Where, inside one refresh of a slow counter, a phase's energy went.

NVML's counter tells the energy of each ~100 ms refresh, not when within it the energy was
spent. The sampler knows where phases begin and end, and sweeper synchronises the device at
both, so the work, and the power above the device's idle, lies inside phases and steps
where they open and close. ``PhaseMarks`` keeps those boundaries and splits a refresh's
energy at them:

* a piece that continues into a neighbouring refresh with no boundary there holds that
  refresh's mean power (the same work goes on); one that opens a phase holds the gap's
  power until its work is launched, learned from phase starts that allow it (``launch``;
  until then the H200 recording's ~2 ms; negative where the work starts above its
  level, a burst first), so a phase-start piece that does not take the rest does not
  take a launch's worth of the work's power from the phase before it;
* a gap between phases with no such neighbour holds the device's power between phases
  nearby (the lowest of ``gap_levels``), plus the decay after a phase ends, whose length
  is learned from phase ends that allow it (``tail_s``; until then the H200 recording's:
  its 30 ms decay holds ~9 ms of the drop's power) and whose shape is the recording's
  (51%, 28% and 12% of the drop in three equal steps, ``decay_held_s``), so a gap of a
  few ms holds about half the drop above its level; a gap that opens the refresh after a
  phase ended in the one before holds what is left of its decay;
* a phase piece with neither takes what the refresh's energy leaves, so a burst shorter
  than a refresh counts for the phase it belongs to (at the level that leaves room for its
  own decay in the gap after it); with none, the remainder goes to a phase that begins in
  the refresh (a phase's start is its least known part: launch, warm-up, clocks ramping),
  else it is shared in proportion to the levels.

How far the split may be off is a stated model, not a bound (issue 24): each piece's
energy as assumed is off by an independent error whose standard deviation comes from what
the run observed of its level (uniforms over what was seen: sd = half-width / sqrt(3)):

* a piece at a neighbour's mean power: power that varies within a refresh (the largest
  deviation of the instant-power samples read in the neighbour or the refresh beyond it)
  moves the piece's mean by up to that over its shorter side (a piece that covers most of
  a refresh averages most of it), and a drift between refreshes (the refresh beyond's
  mean) over all of it. Each refresh's mean is itself off by its ends' timing, which the
  end pieces count, so that much is taken out. An instant sample is the power at the
  field's last refresh, which is not on the counter's grid (on the H200 its refreshes
  come 101.4 +- 3.2 ms apart, a random walk, and up to 1.25 such gaps apart,
  ``FIELD_AGE_PERIODS``): one with a boundary in that time before it was read may show
  either side's power and is not used here. A gap piece with nothing seen
  of its neighbour's variation varies as the gaps' power does;
* a gap holds the decay after a phase: its length is the inverse-variance mean of the
  H200's (+-50%) and the decays learned here, each off by how far the work's level moved
  before its end and by the refresh jitter, widened by the Birge ratio where they scatter
  more than that; it starts from where the work stopped, within how much its power was
  seen to vary by those samples (for a phase no such sample saw, as one inside one
  refresh or shorter than a sample's age, anywhere from the gap's power to twice its
  mean), for a gap after a phase in the same refresh or one that opens the next;
* phase pieces that share what is left by their lengths are each off by how far their
  power is from their common mean (as those samples saw the work's power vary, else
  wide);
* a piece that opens a phase at a neighbour's power, by how well its launch is known
  (the pooled launches' sd, widened where they scatter, as the decay's);
* levels that missed their refresh's energy by more than three times their stated spread
  met what the model does not describe (a step in power that no sample saw, say: heavy
  work capped from 780 to 690 W just before a refresh), and which piece holds the miss
  is unknown: each is off by at least its length's share of it (``MODEL_MISS_SD``);
* a piece the split put above what the device can draw (its power limit with headroom
  for bursts, ``max_w``) or below the least it was seen to draw holds a figure no device
  gives: the other pieces' levels put it there, so they are widened to its excess, and it
  is off by at least that (a 10 ms evaluation that the neighbours' levels left 0 J was
  stated as 0 J +- 0); a piece above ``max_w`` is also held there, what it had beyond it
  going to the others as their errors' variances share a miss (``_within``);
* the refresh times are off by the grid's jitter: not a piece's error, as a refresh's
  time moves every piece and rate that rests on it, in this split and the next; the
  timeline redoes the split with each time moved (``RefreshTimeline``), and here the
  jitter only says how far the levels may miss the refresh's energy.

Where every piece had a level, the refresh's energy is one observation of the sum of
their errors: what they missed it by goes to each in proportion to its error's variance
(the least known absorbs most: the normal errors' posterior given their sum), and where
they missed by more than the model allows, their spread is widened to what was missed
(beyond three standard deviations, the usual outlier threshold, each to at least its
length's share). A boundary's uncertainty is a 95% interval (1.96 standard deviations of
a normal error); the constants are the normal's and the uniform's, none fitted to the
benchmark (a threshold of two for the miss was tried there too, and widened cells that
did not need it). Where
nothing is observed (the decay after a phase inside one refresh, learned only from phase
ends followed by two refreshes of gap), the priors make it wide. The premise fails for
windows cut through continuous load (no step at their edges): fewer of those are covered.
benchmarks/phase_accuracy.py shows both cases against the exact integral, with the share
of phases covered and the width over the median error.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

TAIL_SAMPLES = 16  # phase ends whose decay is remembered
# The decay's length until one is learned: the H200 recording's 30 ms decay after a 760 W
# pulse (450, 300, 200 W over context idle) holds 9.1 ms of the drop's power.
DEFAULT_TAIL_S = 0.009
# The decay's shape: those three equal steps (10 ms each there) as shares of the drop,
# stretched in time to the decay's length (an exponential of the same energy from the full
# drop put 1.7x as much of it in the first 3 ms, where back-to-back phases leave gaps).
DECAY_SHARES = (0.51, 0.28, 0.12)
# From a phase's start to its work drawing power (the launch) until one is learned: the
# H200 recording's pulses 1-6 drew from 0.1-2.8 ms after their marks (each to +-1.8 ms,
# its polling), taken as anywhere within 0-4 ms.
DEFAULT_LAUNCH_S = 0.002
# How old an instant sample's value may be, in the field's refresh gaps (its median, learned
# by sweeper.energy.refresh; the counter's period until then): the field's longest gap in
# the H200 recording (124.5 ms; 99th percentile 115 ms) over its median (101.4 ms) is 1.23.
FIELD_AGE_PERIODS = 1.25
STEADY = 0.05  # a phase's power is steady when two refreshes before its end agree this well
# Levels that miss their refresh's energy by more than this many of their stated standard
# deviations (a 0.3% chance under the model) met something the model does not describe.
MODEL_MISS_SD = 3.0
MAX_MARKS = 2400  # boundaries kept (the counter's history is shorter)


class Refresh(Protocol):
    """A counter refresh: its time on the grid and the value it reported."""

    lo_s: float
    t_s: float
    value_j: float


Piece = tuple[float, float, float]  # (start_s, end_s, energy_j)


@dataclass(frozen=True)
class Split:
    """A refresh's energy split at the phase boundaries inside it, and how far the split
    may be off: each piece's energy as assumed (its level times its length) has an error of
    standard deviation ``sd_j`` (from what the level was taken from), and the pieces that
    took what the refresh's energy left (``shares`` of it) absorb all the others' errors.
    The refresh times' errors are not in ``sd_j``: the caller propagates them."""

    pieces: list[Piece]
    sd_j: list[float]
    shares: list[float]
    # the pieces' energies before any was held within what the device can draw
    # (``_within``); empty when none was
    unheld_j: tuple[float, ...] = ()

    def smooth(self) -> Split:
        """The split before pieces were held within what the device can draw: holding is
        not smooth in the refresh times, so their derivative is taken on this."""
        if not self.unheld_j:
            return self
        return replace(self, pieces=[(lo, hi, e) for (lo, hi, _), e in zip(
            self.pieces, self.unheld_j, strict=True)], unheld_j=())

    def terms_at(self, t_s: float) -> list[float]:
        """The error of the cumulative energy at ``t_s`` inside the refresh, as each
        piece's share (J, one standard deviation): with independent piece errors ``e_i``
        it is ``sum e_i (f_i - W)``, ``f_i`` the part of piece i before ``t_s`` and ``W``
        the takers' share before it. Two boundaries in one refresh share these errors."""
        before = [min(max((t_s - lo) / (hi - lo), 0.0), 1.0) if hi > lo else float(t_s >= hi)
                  for lo, hi, _ in self.pieces]
        taken = sum(w * f for w, f in zip(self.shares, before, strict=True))
        return [sd * (f - taken) for sd, f in zip(self.sd_j, before, strict=True)]

    def sd_at(self, t_s: float) -> float:
        """Standard deviation (J) of the cumulative energy at ``t_s``."""
        return math.sqrt(sum(c * c for c in self.terms_at(t_s)))


class PhaseMarks:
    """Phase boundaries on the counter's clock, the decay learned from them, and the split
    of a refresh's energy at them."""

    def __init__(self) -> None:
        self._marks: list[tuple[float, str]] = []  # (t_s, "begin" | "end"), in time order
        self._times: list[float] = []
        self._tails: deque[float] = deque(maxlen=TAIL_SAMPLES)
        # how far each learned decay may be off: the work's level moved by the step seen
        # between the two refreshes before its end, over the time to the end
        self._tail_errors: deque[float] = deque(maxlen=TAIL_SAMPLES)
        self._launches: deque[float] = deque(maxlen=TAIL_SAMPLES)
        self._launch_errors: deque[float] = deque(maxlen=TAIL_SAMPLES)

    def __bool__(self) -> bool:
        return bool(self._marks)

    def mark(self, t_s: float, edge: str) -> None:
        """A phase boundary: "begin" (its work follows) or "end" (its work precedes)."""
        if edge not in ("begin", "end"):
            raise ValueError(f"edge must be 'begin' or 'end', not {edge!r}")
        i = bisect.bisect_right(self._times, t_s)
        self._marks.insert(i, (t_s, edge))
        self._times.insert(i, t_s)
        if len(self._marks) > MAX_MARKS:
            del self._marks[: MAX_MARKS // 2], self._times[: MAX_MARKS // 2]

    def between(self, lo_s: float, hi_s: float) -> list[tuple[float, str]]:
        """The boundaries at ``lo_s <= t <= hi_s``."""
        i = bisect.bisect_left(self._times, lo_s)
        j = bisect.bisect_right(self._times, hi_s)
        return self._marks[i:j]

    def in_phase(self, t_s: float) -> bool:
        i = bisect.bisect_right(self._times, t_s)
        return i > 0 and self._marks[i - 1][1] == "begin"

    # ------------------------------------------------------------------ levels

    def _span(self, a: Refresh | None, b: Refresh | None,
              period_s: float) -> tuple[float, float, float] | None:
        """(start, end, mean power) of a refresh with no boundary in it, else None."""
        rate = self.rate(a, b, period_s)
        return None if rate is None or a is None or b is None else (a.t_s, b.t_s, rate)

    def rate(self, a: Refresh | None, b: Refresh | None, period_s: float) -> float | None:
        """Mean power between two consecutive refreshes one period apart with no phase
        boundary between them (one stretch of the same work), else None."""
        if a is None or b is None or not 0.5 * period_s <= b.t_s - a.t_s <= 1.5 * period_s:
            return None
        if self.between(a.t_s, b.t_s):
            return None
        return (b.value_j - a.value_j) / (b.t_s - a.t_s)

    def gap_levels(self, changes: Sequence[Refresh], period_s: float, t_s: float) -> list[float]:
        """The mean powers of the refreshes lying wholly between phases nearest to ``t_s``
        (two on each side, walking out from it), else of every refresh. The lowest is what
        the device draws between phases there (the first after a phase may still hold its
        decay)."""

        def interval_rate(k: int) -> float | None:  # refresh interval k, if one period long
            a, b = changes[k], changes[k + 1]
            if a.lo_s == -math.inf or not 0.5 * period_s <= b.t_s - a.t_s <= 1.5 * period_s:
                return None
            return (b.value_j - a.value_j) / (b.t_s - a.t_s)

        def gap_rate(k: int) -> float | None:  # ... and wholly between phases
            a, b = changes[k], changes[k + 1]
            if self.between(a.t_s, b.t_s) or self.in_phase(a.t_s):
                return None
            return interval_rate(k)

        ends = [c.t_s for c in changes[1:]]
        split = bisect.bisect_right(ends, t_s)  # intervals before it end at or before t_s
        before: list[float] = []
        for k in range(split - 1, -1, -1):
            if (rate := gap_rate(k)) is not None:
                before.insert(0, rate)
                if len(before) == 2:
                    break
        after: list[float] = []
        for k in range(split, len(changes) - 1):
            if (rate := gap_rate(k)) is not None:
                after.append(rate)
                if len(after) == 2:
                    break
        if before or after:
            return before + after
        return [r for k in range(len(changes) - 1) if (r := interval_rate(k)) is not None]

    @property
    def tail_s(self) -> float:
        """How long the device keeps drawing its working power after a phase ends, as the
        energy of its decay over the drop: the H200's and the decays learned here, each
        weighted by how well it is known (``_decay``)."""
        return self._decay()[0]

    def _decay(self) -> tuple[float, float]:
        """The decay (s) and its standard deviation: the H200's (anywhere within +-50% of
        it) pooled with each decay learned here (off by how far the work's level moved
        before its end, and the refresh times' jitter), ``_pooled``."""
        return _pooled(DEFAULT_TAIL_S, 0.5 * DEFAULT_TAIL_S, self._tails, self._tail_errors)

    def launch(self) -> tuple[float, float]:
        """How long after a phase starts its work draws its power (s: the energy the start
        holds below the work's level, over the step from the gap; negative where the
        work starts above its level), and the standard deviation of that: the H200's
        (0-4 ms) pooled with each launch learned here (off by how far the levels around
        it moved, and the refresh times' jitter), ``_pooled``."""
        return _pooled(DEFAULT_LAUNCH_S, DEFAULT_LAUNCH_S, self._launches, self._launch_errors)

    @property
    def launches_learned(self) -> int:
        """Phase starts the launch was learned from (0: ``launch`` is the H200's)."""
        return len(self._launches)

    @property
    def tails_learned(self) -> int:
        """Phase ends the decay was learned from (0: ``tail_s`` is the H200's)."""
        return len(self._tails)

    def _one_mark_window(
        self, changes: Sequence[Refresh], period_s: float, edge: str
    ) -> tuple[tuple[Refresh, ...], float] | None:
        """The last six refreshes ``cm, c0, c1, c2, c3, c4``, each a period after the one
        before, with one boundary among them, an ``edge`` inside ``[c1, c2]`` (the phase
        on its side at ``c0``): where a phase's end or start can be learned, with the
        boundary's time; else None."""
        if len(changes) < 6:
            return None
        window = tuple(changes[-6:])
        if any(not 0.5 * period_s <= b.t_s - a.t_s <= 1.5 * period_s
               for a, b in zip(window, window[1:], strict=False)):
            return None
        cm, c0, c1, c2, _, c4 = window
        marks = self.between(c1.t_s, c2.t_s)
        if len(marks) != 1 or marks[0][1] != edge or self.in_phase(c0.t_s) != (edge == "end"):
            return None
        if self.between(cm.t_s, c1.t_s - 1e-12) or self.between(c2.t_s + 1e-12, c4.t_s):
            return None
        return window, marks[0][0]

    def learn_tail(
        self, changes: Sequence[Refresh], period_s: float, jitter_s: float = 0.0
    ) -> None:
        """Learn the decay from the phase end three refreshes back, if that phase ended in
        steady work and two refreshes of gap followed: what the refresh of the end and the
        next hold beyond the phase's level before it and the gap's level after."""
        window = self._one_mark_window(changes, period_s, "end")
        if window is None:
            return
        (cm, c0, c1, c2, c3, c4), t_e = window
        before_w = (c0.value_j - cm.value_j) / (c0.t_s - cm.t_s)
        work_w = (c1.value_j - c0.value_j) / (c1.t_s - c0.t_s)
        gap_w = (c4.value_j - c3.value_j) / (c4.t_s - c3.t_s)
        if abs(work_w - before_w) > STEADY * work_w or work_w - gap_w < 0.2 * work_w:
            return
        tail_j = (c2.value_j - c1.value_j - work_w * (t_e - c1.t_s) - gap_w * (c2.t_s - t_e)) + (
            c3.value_j - c2.value_j - gap_w * (c3.t_s - c2.t_s))
        if tail_j <= 0:  # the work ended below its mean (a trough of bursty work), no decay
            return
        self._tails.append(min(tail_j / (work_w - gap_w), period_s))
        moved = abs(work_w - before_w) * (t_e - c1.t_s) / (work_w - gap_w) / math.sqrt(3.0)
        self._tail_errors.append(math.hypot(moved, math.sqrt(2.0) * jitter_s))

    def learn_launch(
        self, changes: Sequence[Refresh], period_s: float, jitter_s: float = 0.0
    ) -> None:
        """Learn the launch from the phase start three refreshes back, if two refreshes of
        gap at one level came before it and two of steady work after: what the refresh of
        the start holds below the gap's level before the start and the work's after it,
        over the step between them."""
        window = self._one_mark_window(changes, period_s, "begin")
        if window is None:
            return
        (cm, c0, c1, c2, c3, c4), t_b = window
        before_w, gap_w, work_w, after_w = (
            (b.value_j - a.value_j) / (b.t_s - a.t_s)
            for a, b in ((cm, c0), (c0, c1), (c2, c3), (c3, c4)))
        step_w = work_w - gap_w
        if (step_w < 0.2 * work_w or abs(after_w - work_w) > STEADY * work_w
                or abs(gap_w - before_w) > STEADY * step_w):
            return
        launch_j = gap_w * (t_b - c1.t_s) + work_w * (c2.t_s - t_b) - (c2.value_j - c1.value_j)
        work_s = c2.t_s - t_b
        self._launches.append(min(max(launch_j / step_w, -work_s), work_s))
        moved = math.hypot(abs(after_w - work_w) * work_s,
                           abs(gap_w - before_w) * (t_b - c1.t_s)) / step_w / math.sqrt(3.0)
        self._launch_errors.append(
            math.hypot(moved, math.hypot(gap_w, work_w) / step_w * jitter_s))

    def _decay_held(
        self, samples: Sequence[tuple[float, float]], work_w: float, level_w: float,
        held_s: float, lo_s: float, hi_s: float, *, seen: bool,
    ) -> tuple[float, float]:
        """A gap's share of the decay after a phase: the energy it holds (J) above its own
        level, the work at ``work_w`` decaying towards ``level_w`` (``held_s``: the decay's
        energy over the gap per W of drop), and how far that may be off (J, a uniform's
        half-width) from where the work stopped. That is its mean only within how much its
        power was seen to vary (``samples`` read in phase over ``[lo_s, hi_s]``, each of the
        phase alone); where nothing of the phase was ``seen`` or no such sample was read,
        anywhere from the gap's power to twice the mean above it."""
        drop_w = max(work_w - level_w, 0.0)
        varies_w = max((abs(w - work_w) for t, w in samples
                        if lo_s <= t <= hi_s and self.in_phase(t)), default=None)
        if not seen or varies_w is None:  # nothing of the phase seen
            varies_w = max(varies_w or 0.0, drop_w)
        return drop_w * held_s, held_s * varies_w

    def _work_w(self, a: Refresh, b: Refresh, floor_w: float) -> float:
        """The power of the work in phases within refresh ``[a, b]``, the rest of it taken
        to be at ``floor_w``."""
        in_phase_s, t_s, inside = 0.0, a.t_s, self.in_phase(a.t_s)
        for t_m, edge in [*self.between(a.t_s, b.t_s), (b.t_s, "end")]:
            if inside:
                in_phase_s += t_m - t_s
            t_s, inside = t_m, edge == "begin"
        span_s = b.t_s - a.t_s
        if in_phase_s <= 0 or span_s <= 0:
            return (b.value_j - a.value_j) / span_s if span_s > 0 else floor_w
        return floor_w + max(b.value_j - a.value_j - floor_w * span_s, 0.0) / in_phase_s

    # ------------------------------------------------------------------ the split

    def split(
        self, changes: Sequence[Refresh], period_s: float,
        c0: Refresh | None, c1: Refresh, c2: Refresh, c3: Refresh | None,
        cm: Refresh | None = None, c4: Refresh | None = None,
        samples: Sequence[tuple[float, float]] = (), jitter_s: float = 0.0,
        max_w: float | None = None, field_s: float | None = None,
    ) -> Split | None:
        """The energy of refresh interval ``[c1, c2]`` split at the phase boundaries inside
        it (see the module docstring); None when none falls inside. ``c0`` and ``c3`` are
        the refreshes around it, ``cm`` and ``c4`` the ones beyond those, and ``samples``
        instant-power readings ``(t_s, power_w)``: they say how far the assumed levels may
        be off; the refresh times' ``jitter_s`` says how far the levels may miss the
        refresh's energy (its effect on the split is the caller's to propagate); the
        instant field refreshes every ``field_s`` (None: as the counter does)."""
        t1, t2 = c1.t_s, c2.t_s
        lo = bisect.bisect_right(self._times, t1)
        hi = bisect.bisect_left(self._times, t2)
        if lo >= hi:
            return None
        inside = self._marks[lo:hi]
        cuts = [t1, *(t for t, _ in inside), t2]
        edges = [self._marks[lo - 1][1] if lo > 0 else "end", *(e for _, e in inside)]
        in_phase = [e == "begin" for e in edges]
        n = len(in_phase)
        lengths = [b - a for a, b in zip(cuts, cuts[1:], strict=False)]
        e_int = c2.value_j - c1.value_j
        r_prev, r_next = self.rate(c0, c1, period_s), self.rate(c2, c3, period_s)
        seen = [r for r in (r_prev, r_next, e_int / (t2 - t1)) if r is not None]
        gap_levels = self.gap_levels(changes, period_s, t1)
        floor_w = min(gap_levels) if gap_levels else min(seen)  # the power between phases
        priors: list[float | None] = []
        for j in range(n):
            if j == 0 and r_prev is not None:
                priors.append(r_prev)
            elif j == n - 1 and r_next is not None:
                priors.append(r_next)
            else:
                priors.append(None if in_phase[j] else floor_w)
        free = [j for j in range(n) if priors[j] is None]
        fixed = [j for j in range(n) if priors[j] is not None]
        takers = free or [j for j in fixed if in_phase[j] and j > 0] or fixed
        base = [max(0.0, priors[j] or 0.0) * lengths[j] for j in range(n)]
        launch_sd_j = [0.0] * n
        if n > 1 and r_next is not None and edges[-1] == "begin":
            # a phase that opens here at the next refresh's power first launches its work,
            # at the gap's power until then
            launch_s, launch_sd_s = self.launch()
            drop_w = max(r_next - floor_w, 0.0)
            base[-1] = max(base[-1] - min(max(launch_s, -lengths[-1]), lengths[-1]) * drop_w,
                           0.0)
            launch_sd_j[-1] = min(launch_sd_s, lengths[-1]) * drop_w
        energy = _distribute(e_int, base, lengths, takers, free)
        # the samples that show one side of a boundary (module docstring)
        age_s = FIELD_AGE_PERIODS * (field_s or period_s)
        clean = [(t, w) for t, w in samples if not self.between(t - age_s, t)]
        tail_s, tail_sd_s = self._decay()  # pooled once for the split
        added_j = [0.0] * n
        stop_w = [0.0] * n  # how far the decay may be off from where the work stopped (J)
        if tail_s > 0:  # a gap after a phase that ends here first holds the work's decay
            decays = [j for j in range(1, n) if not in_phase[j] and in_phase[j - 1]
                      and lengths[j] > 0 and lengths[j - 1] > 0]
            held = {j: decay_held_s(tail_s, 0.0, lengths[j]) for j in decays}
            # a gap opening the refresh, after a phase that ended in the one before, holds
            # what is left of that phase's decay
            if (not in_phase[0] and r_prev is None and c0 is not None and lengths[0] > 0
                    and lo > 0 and self._marks[lo - 1][1] == "end"):
                end_s = self._marks[lo - 1][0]
                since_s = t1 - end_s
                seen_w = self.rate(cm, c0, period_s)
                work_w = seen_w or self._work_w(c0, c1, floor_w)
                held_s = decay_held_s(tail_s, since_s, since_s + lengths[0])
                added_j[0], stop_w[0] = self._decay_held(
                    clean, work_w, floor_w, held_s, c0.t_s - period_s, end_s,
                    seen=seen_w is not None)
                base[0] += added_j[0]
            free_w: float | None = None
            solved = False  # the free pieces' level, once the fixed levels' decays are in
            for j in sorted(decays, key=lambda j: j - 1 in free):  # after fixed levels first
                if j - 1 in free and not solved:
                    free_w, solved = _free_level(e_int, base, lengths, free, held), True
                # a piece that took the rest holds the common level that leaves room for its
                # own decay (taking the decay's energy as work would raise the level, and
                # with it the decay: a few ms of phase would go to the gap after it)
                work_w = free_w if j - 1 in free and free_w is not None else (
                    energy[j - 1] / lengths[j - 1])
                # held[j]: the decay's energy over the gap, per W of drop; a phase wholly
                # inside the refresh (j > 1) is seen by no sample
                added_j[j], stop_w[j] = self._decay_held(
                    clean, work_w, base[j] / lengths[j], held[j], t1 - period_s, cuts[j],
                    seen=j <= 1)
                base[j] += added_j[j]
            energy = _distribute(e_int, base, lengths, takers, free)
        # a refresh's mean power is off by its two ends' timing: sqrt(2) jitter x power / period
        timing = math.sqrt(2.0) * jitter_s / period_s
        prev_dev = _deviation(r_prev, self._span(cm, c0, period_s), clean, c0, c1,
                              timing * abs(r_prev or 0.0))
        next_dev = _deviation(r_next, self._span(c3, c4, period_s), clean, c2, c3,
                              timing * abs(r_next or 0.0))
        interval_w = e_int / (t2 - t1)
        floor_sd_w = _uniform_sd(gap_levels)
        tail_sd = tail_sd_s / max(tail_s, 1e-9)  # how far the decay may be off, relative
        shared_sd_w = 0.0
        if len(free) > 1:
            free_s = sum(lengths[j] for j in free)
            mean_w = sum(energy[j] for j in free) / free_s if free_s > 0 else 0.0
            shared_sd_w = max((abs(w - mean_w) for t, w in clean
                               if t1 - period_s <= t <= t2 and self.in_phase(t)),
                              default=max(mean_w - floor_w, 0.0)) / math.sqrt(3.0)
        sds: list[float] = []
        for j in range(n):
            if priors[j] is None:
                # took the rest, shared with other such pieces by length: each is off by how
                # far its power is from their common mean, as the work's power was seen to
                # vary (else anywhere from the gap's power to twice the mean above it)
                level_j = lengths[j] * shared_sd_w if len(free) > 1 else 0.0
            elif (j == 0 and r_prev is not None) or (j == n - 1 and r_next is not None):
                within_w, drift_w = prev_dev if j == 0 and r_prev is not None else next_dev
                if within_w is not None or drift_w is not None:
                    # power that varies within a refresh moves a piece's mean by up to that
                    # over its shorter side; a drift between refreshes, over all of it
                    level_j = math.hypot(
                        (within_w or 0.0) * min(lengths[j], max(t2 - t1 - lengths[j], 0.0)),
                        (drift_w or 0.0) * lengths[j]) / math.sqrt(3.0)
                elif not in_phase[j]:  # nothing seen of it: as the gaps' power varies
                    level_j = lengths[j] * floor_sd_w
                else:
                    level_w = r_prev if j == 0 and r_prev is not None else r_next
                    level_j = lengths[j] * abs((level_w or 0.0) - interval_w) / math.sqrt(3.0)
            else:  # a gap at the power between phases
                level_j = lengths[j] * floor_sd_w
            # plus the decay after a phase: its length, and the level it decayed from
            sds.append(math.hypot(level_j, added_j[j] * tail_sd, stop_w[j] / math.sqrt(3.0),
                                  launch_sd_j[j]))
        level_sds = list(sds)  # the levels' own errors; the refresh times' are the caller's
        # the refresh times are known to the grid's jitter: the power at each end times it
        # (here only for how far the levels may miss the refresh's energy, and who absorbs it)
        if lengths[0] > 0:
            sds[0] = math.hypot(sds[0], jitter_s * energy[0] / lengths[0])
        if lengths[-1] > 0:
            sds[-1] = math.hypot(sds[-1], jitter_s * energy[-1] / lengths[-1])
        kept = sum(b for j, b in enumerate(base) if j not in takers)
        # A piece above what the device can draw (``max_w``) or below the least it was seen
        # to draw holds a figure no device gives: the other pieces' levels put it there,
        # and were off by at least that much. Each such piece is off by its own excess, and
        # the others are widened to the sum.
        ceiling_w = math.inf if max_w is None else max_w
        least_w = min([floor_w, *seen,  # floor_w: the lowest of the gap levels
                       *(w for t, w in samples if t1 - period_s <= t <= t2 + period_s)])
        wrong = {j: max(energy[j] - ceiling_w * lengths[j], least_w * lengths[j] - energy[j])
                 for j in range(n) if lengths[j] > 0 and not
                 least_w * lengths[j] <= energy[j] <= ceiling_w * lengths[j]}
        if wrong:
            wrong_j = sum(wrong.values())
            rest = [j for j in range(n) if j not in wrong and lengths[j] > 0]
            predicted_j = math.sqrt(sum(sds[j] ** 2 for j in rest))
            rest_s = sum(lengths[j] for j in rest)
            if wrong_j > predicted_j and rest_s > 0:
                for j in rest:  # shared as their spread is, else by their length
                    share = (sds[j] / predicted_j if predicted_j > 0
                             else math.sqrt(lengths[j] / rest_s))
                    sds[j] = max(sds[j], wrong_j * share)
                    level_sds[j] = max(level_sds[j], wrong_j * share)
            for j, off_j in wrong.items():
                sds[j], level_sds[j] = max(sds[j], off_j), max(level_sds[j], off_j)
        if takers == fixed or kept > e_int:
            # Every piece had a level and they were scaled to the refresh's energy: what
            # they missed it by is one draw of the sum of their errors. Levels that missed
            # by more than their stated spread allows were off by more: widen them to it.
            predicted_j = math.sqrt(sum(sd * sd for sd in sds))
            missed_j = abs(e_int - sum(base))
            if missed_j > predicted_j > 0:
                sds = [sd * missed_j / predicted_j for sd in sds]
                level_sds = [sd * missed_j / predicted_j for sd in level_sds]
            if missed_j > MODEL_MISS_SD * predicted_j:
                # Missed by more than the model allows at all: something it does not
                # describe happened in this refresh, and which piece holds it is unknown.
                # Each may, by its length's share of the miss (the even split's own bound).
                share = [missed_j * length / (t2 - t1) for length in lengths]
                sds = [max(sd, f) for sd, f in zip(sds, share, strict=True)]
                level_sds = [max(sd, f) for sd, f in zip(level_sds, share, strict=True)]
        # Every piece had a level: what they missed the refresh's energy by goes to each in
        # proportion to its error's variance (the least known piece absorbs the most; the
        # normal errors' posterior given their sum), not to its energy.
        var = [sd * sd for sd in sds]
        posterior: list[float] | None = None
        if takers == fixed and sum(var) > 0:
            weights = [v / sum(var) for v in var]
            alloc = [b + w * (e_int - sum(base)) for b, w in zip(base, weights, strict=True)]
            if min(alloc) >= 0:
                energy, posterior = alloc, weights
        # Nor is a figure above what the device can draw kept: the piece is held at that,
        # and what it had beyond it goes to the others as their errors would share a miss.
        # (Below the least power seen, the bound is only what was seen: held there, idle
        # phases came out 17% closer to the truth but their +- did not follow, 9 -> 5 of
        # 20 cells calibrated in benchmarks/phase_accuracy.py; such a piece keeps its
        # figure and the widening above.)
        unheld = energy
        energy = _within(energy, lengths, ceiling_w, var)
        if posterior is not None:
            shares = posterior
        elif kept > e_int:  # nothing left for the takers: every piece was scaled down
            shares = list(base)
        else:
            shares = [(lengths[j] if j in free else base[j]) if j in takers else 0.0
                      for j in range(n)]
        total = sum(shares)
        shares = [w / total for w in shares] if total > 0 else [1.0 / n] * n
        return Split([(cuts[j], cuts[j + 1], energy[j]) for j in range(n)], level_sds, shares,
                     tuple(unheld) if energy != unheld else ())


def _free_level(
    e_int: float, base: list[float], lengths: list[float], free: list[int],
    held: dict[int, float],
) -> float | None:
    """The common power of the pieces that take the rest (``free``) when some end in a gap
    that holds their decay (``held``: per gap, its decay's energy per W of drop): the level
    at which work plus decays fill the refresh, ``e_int = sum(base of the others) + W *
    sum(free lengths) + sum((W - gap level) * held)``; None when no free piece ends in such
    a gap or nothing is left for them."""
    gaps = {j: base[j] / lengths[j] for j in held if j - 1 in free}
    if not gaps:
        return None
    rest = e_int - sum(b for j, b in enumerate(base) if j not in free)
    free_s = sum(lengths[j] for j in free)
    while True:  # a gap whose level is above the work's holds no decay
        w = (rest + sum(p * held[j] for j, p in gaps.items())) / (
            free_s + sum(held[j] for j in gaps))
        below = {j for j, p in gaps.items() if p > w}
        if not below:
            return w if w > 0 else None
        gaps = {j: p for j, p in gaps.items() if j not in below}
        if not gaps:
            return rest / free_s if free_s > 0 and rest > 0 else None


def _within(
    energy: list[float], lengths: list[float], ceiling_w: float, var: list[float],
) -> list[float]:
    """Pieces' energies held to what the device can draw over each (0 to ``ceiling_w``
    times its length): a piece beyond it is held at the bound, and the difference goes to
    the pieces within, in proportion to their errors' variances (by length where none has
    any), until none is pushed out. The refresh's energy is kept; where it cannot be
    placed within the bounds, the split is left as it was."""
    out = list(energy)
    held: set[int] = set()
    for _ in range(len(out)):
        moved = {j: min(max(e, 0.0), ceiling_w * lengths[j]) - e
                 for j, e in enumerate(out) if j not in held and lengths[j] > 0}
        moved = {j: d for j, d in moved.items() if d != 0.0}
        if not moved:
            return out
        held.update(moved)
        rest = [j for j in range(len(out)) if j not in held and lengths[j] > 0]
        if not rest:
            return list(energy)
        weights = [var[j] for j in rest]
        if sum(weights) <= 0:
            weights = [lengths[j] for j in rest]
        total = sum(weights)
        for j, d in moved.items():
            out[j] += d
        excess_j = sum(moved.values())
        for j, w in zip(rest, weights, strict=True):
            out[j] -= excess_j * w / total
    return out


def decay_held_s(tail_s: float, from_s: float, to_s: float) -> float:
    """The decay's energy per W of drop from ``from_s`` to ``to_s`` after a phase ends:
    the recording's shape (``DECAY_SHARES``) stretched to hold ``tail_s`` in all."""
    if tail_s <= 0:
        return 0.0
    step_s = tail_s / sum(DECAY_SHARES)

    def held(t_s: float) -> float:
        return sum(f * min(max(t_s - k * step_s, 0.0), step_s)
                   for k, f in enumerate(DECAY_SHARES))

    return held(to_s) - held(from_s)


def _pooled(
    prior_s: float, prior_half_s: float, values: Sequence[float], errors: Sequence[float]
) -> tuple[float, float]:
    """A duration known a priori to ``prior_s`` +- ``prior_half_s`` (a uniform), pooled
    with ``values`` learned here, each off by its ``errors`` (sd): their inverse-variance
    mean and its sd. Where they scatter more than those errors allow (chi-square over its
    degrees of freedom above 1: the duration differs between phases), the sd is widened
    by that ratio's root (the Birge ratio)."""
    means = [prior_s, *values]
    sds = [prior_half_s / math.sqrt(3.0), *(max(u, 1e-6) for u in errors)]
    weights = [1.0 / (u * u) for u in sds]
    mean = sum(w * v for w, v in zip(weights, means, strict=True)) / sum(weights)
    sd = 1.0 / math.sqrt(sum(weights))
    if len(means) > 1:
        chi2 = sum(w * (v - mean) ** 2 for w, v in zip(weights, means, strict=True))
        sd *= math.sqrt(max(chi2 / (len(means) - 1), 1.0))
    return mean, sd


def _uniform_sd(levels: Sequence[float]) -> float:
    """The standard deviation of a level known only to lie within what was seen."""
    return (max(levels) - min(levels)) / math.sqrt(12.0) if len(levels) > 1 else 0.0


def _deviation(
    level_w: float | None, beyond: tuple[float, float, float] | None,
    samples: Sequence[tuple[float, float]], a: Refresh | None, b: Refresh | None,
    timing_w: float = 0.0,
) -> tuple[float | None, float | None]:
    """How far the power of the work in refresh ``[a, b]`` strays from its mean ``level_w``
    (None, None without it): within a refresh, the largest deviation of the instant-power
    samples read in it or in the refresh beyond (``beyond``: start, end, mean power; None
    when a boundary falls in it); and between refreshes, the beyond one's mean's. A
    refresh's mean is itself off by its ends' timing (``timing_w``, one sd), which the
    pieces at a refresh's ends count already: that much of each deviation is taken out."""
    if level_w is None or a is None or b is None:
        return None, None
    lo_s = beyond[0] if beyond is not None and beyond[0] < a.t_s else a.t_s
    hi_s = beyond[1] if beyond is not None and beyond[1] > b.t_s else b.t_s
    within = max((abs(w - level_w) for t, w in samples if lo_s <= t <= hi_s), default=None)
    drift = None if beyond is None else abs(beyond[2] - level_w)
    return (None if within is None else math.sqrt(max(within**2 - timing_w**2, 0.0)),
            None if drift is None else math.sqrt(max(drift**2 - 2 * timing_w**2, 0.0)))


def _distribute(
    e_int: float, base: list[float], lengths: list[float], takers: list[int], free: list[int]
) -> list[float]:
    """Pieces' energies: ``base`` for all but the takers, which share what is left (by
    length if free, else in proportion to their base); when nothing is left the others are
    scaled down to the interval's energy."""
    energy = list(base)
    kept = sum(e for j, e in enumerate(energy) if j not in takers)
    rest = e_int - kept
    if rest >= 0:
        weights = [lengths[j] if j in free else energy[j] for j in takers]
        total_w = sum(weights)
        for j, w in zip(takers, weights, strict=True):
            energy[j] = rest * (w / total_w if total_w > 0 else 1.0 / len(takers))
        return energy
    scale = e_int / kept if kept > 0 else 0.0
    return [0.0 if j in takers else e * scale for j, e in enumerate(energy)]
