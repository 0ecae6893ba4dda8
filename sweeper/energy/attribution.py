"""Where, inside one refresh of a slow counter, a phase's energy went.

NVML's counter tells the energy of each ~100 ms refresh, not when within it the energy was
spent. The sampler knows where phases begin and end, and sweeper synchronises the device at
both, so the work, and the power above the device's idle, lies inside phases and steps
where they open and close. ``PhaseMarks`` keeps those boundaries and splits a refresh's
energy at them:

* a piece that continues into a neighbouring refresh with no boundary there holds that
  refresh's mean power (the same work goes on);
* a gap between phases with no such neighbour holds the device's power between phases
  nearby (``gap_w``), plus the decay after a phase ends, whose length is learned from phase
  ends that allow it (``tail_s``; until then the H200 recording's: its 30 ms decay holds
  ~9 ms of the drop's power), so a gap of a few ms stays near the work's level; a gap that
  opens the refresh after a phase ended in the one before holds what is left of its decay;
* a phase piece with neither takes what the refresh's energy leaves, so a burst shorter
  than a refresh counts for the phase it belongs to; with none, the remainder goes to a
  phase that begins in the refresh (a phase's start is its least known part: launch,
  warm-up, clocks ramping), else it is shared in proportion to the levels.

How far the split may be off is a stated model, not a bound (issue 24): each piece's
energy as assumed is off by an independent error whose standard deviation comes from what
its level was taken from: a neighbour's mean power is taken to be anywhere within the
largest deviation seen around it (instant power, the refresh beyond: a uniform, sd = that
over sqrt(3)); the decay's length within the standard error of the learned ones (+-50% of
the H200's until learned); the level a phase's decay starts from within how much its power
was seen to vary (for a phase wholly inside one refresh, nothing is seen: anywhere from the
gap's power to twice its mean); the refresh times within the grid's jitter. The pieces that
took the rest absorb the others' errors. Where every piece had a level and they missed the
refresh's energy by more than that model allows, the levels were off by more, and their
spread is widened to what was missed. A boundary's uncertainty is then a 95% interval
(1.96 standard deviations of a normal error); the constants are the normal's and the
uniform's, none fitted to the benchmark. The premise fails for windows cut through
continuous load (no step at their edges): fewer of those are covered.
benchmarks/phase_accuracy.py shows both cases against the exact integral, with the share
of phases covered and the width over the median error.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

TAIL_SAMPLES = 16  # phase ends whose decay is remembered
# The decay's length until one is learned: the H200 recording's 30 ms decay after a 760 W
# pulse (450, 300, 200 W over context idle) holds 9.1 ms of the drop's power.
DEFAULT_TAIL_S = 0.009
STEADY = 0.05  # a phase's power is steady when two refreshes before its end agree this well
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
    took what the refresh's energy left (``shares`` of it) absorb all the others' errors."""

    pieces: list[Piece]
    sd_j: list[float]
    shares: list[float]

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

    def rate(self, a: Refresh | None, b: Refresh | None, period_s: float) -> float | None:
        """Mean power between two consecutive refreshes one period apart with no phase
        boundary between them (one stretch of the same work), else None."""
        if a is None or b is None or not 0.5 * period_s <= b.t_s - a.t_s <= 1.5 * period_s:
            return None
        if self.between(a.t_s, b.t_s):
            return None
        return (b.value_j - a.value_j) / (b.t_s - a.t_s)

    def gap_w(self, changes: Sequence[Refresh], period_s: float, t_s: float) -> float | None:
        """What the device draws between phases around ``t_s``: the lowest mean power over
        the refreshes lying wholly between phases nearest to ``t_s`` (two on each side; the
        lowest, as the first after a phase may still hold its decay), else the lowest over
        any refresh (None before two refreshes are seen)."""
        levels = self.gap_levels(changes, period_s, t_s)
        return min(levels) if levels else None

    def gap_levels(self, changes: Sequence[Refresh], period_s: float, t_s: float) -> list[float]:
        """The mean powers ``gap_w`` chooses from: of the refreshes between phases nearest
        to ``t_s``, else of every refresh."""
        before: list[float] = []
        after: list[float] = []
        rates: list[float] = []
        for a, b in zip(changes, changes[1:], strict=False):
            if a.lo_s == -math.inf or not 0.5 * period_s <= b.t_s - a.t_s <= 1.5 * period_s:
                continue
            rate = (b.value_j - a.value_j) / (b.t_s - a.t_s)
            rates.append(rate)
            if self.between(a.t_s, b.t_s) or self.in_phase(a.t_s):
                continue
            if b.t_s <= t_s:
                before = [*before[-1:], rate]
            elif len(after) < 2:
                after.append(rate)
        return before + after or rates

    @property
    def tail_s(self) -> float:
        """How long the device keeps drawing its working power after a phase ends, as the
        energy of its decay over the drop (the H200's until one is learned here)."""
        return statistics.median(self._tails) if self._tails else DEFAULT_TAIL_S

    @property
    def tail_sd(self) -> float:
        """How far ``tail_s`` may be from the device's decay, relative: the standard error
        of the learned decays' median (1.25 sd / sqrt(n)); until two are learned, the
        standard deviation of a decay anywhere within +-50% of the H200's.
        Each learned decay is itself noisy (the work's power around its end), and the
        decay of one device after a given drop is taken to be the same each time."""
        if len(self._tails) < 2:
            return 0.5 / math.sqrt(3.0)
        return 1.25 * statistics.stdev(self._tails) / math.sqrt(len(self._tails)) / max(
            statistics.median(self._tails), 1e-9)

    @property
    def tails_learned(self) -> int:
        """Phase ends the decay was learned from (0: ``tail_s`` is the H200's)."""
        return len(self._tails)

    def learn_tail(self, changes: Sequence[Refresh], period_s: float) -> None:
        """Learn the decay from the phase end three refreshes back, if that phase ended in
        steady work and two refreshes of gap followed: what the refresh of the end and the
        next hold beyond the phase's level before it and the gap's level after."""
        if len(changes) < 6:
            return
        cm, c0, c1, c2, c3, c4 = changes[-6:]
        pairs = ((cm, c0), (c0, c1), (c1, c2), (c2, c3), (c3, c4))
        if any(not 0.5 * period_s <= b.t_s - a.t_s <= 1.5 * period_s for a, b in pairs):
            return
        ends = self.between(c1.t_s, c2.t_s)
        if len(ends) != 1 or ends[0][1] != "end" or not self.in_phase(c0.t_s):
            return
        if self.between(cm.t_s, c1.t_s - 1e-12) or self.between(c2.t_s + 1e-12, c4.t_s):
            return
        before_w = (c0.value_j - cm.value_j) / (c0.t_s - cm.t_s)
        work_w = (c1.value_j - c0.value_j) / (c1.t_s - c0.t_s)
        gap_w = (c4.value_j - c3.value_j) / (c4.t_s - c3.t_s)
        if abs(work_w - before_w) > STEADY * work_w or work_w - gap_w < 0.2 * work_w:
            return
        t_e = ends[0][0]
        tail_j = (c2.value_j - c1.value_j - work_w * (t_e - c1.t_s) - gap_w * (c2.t_s - t_e)) + (
            c3.value_j - c2.value_j - gap_w * (c3.t_s - c2.t_s))
        if tail_j <= 0:  # the work ended below its mean (a trough of bursty work), no decay
            return
        self._tails.append(min(tail_j / (work_w - gap_w), period_s))

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
    ) -> Split | None:
        """The energy of refresh interval ``[c1, c2]`` split at the phase boundaries inside
        it (see the module docstring); None when none falls inside. ``c0`` and ``c3`` are
        the refreshes around it, ``cm`` and ``c4`` the ones beyond those, and ``samples``
        instant-power readings ``(t_s, power_w)``: they say how far the assumed levels may
        be off, as the refresh times' ``jitter_s`` does for the pieces at its ends."""
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
        floor_w = self.gap_w(changes, period_s, t1)
        if floor_w is None:
            floor_w = min(seen)
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
        energy = _distribute(e_int, base, lengths, takers, free)
        tail_s = self.tail_s
        added_j = [0.0] * n
        stop_w = [0.0] * n  # how far the decay may be off from where the work stopped (J)
        if tail_s > 0:  # a gap after a phase that ends here first holds the work's decay
            for j in range(1, n):
                if in_phase[j] or not in_phase[j - 1] or lengths[j] <= 0 or lengths[j - 1] <= 0:
                    continue
                work_w = energy[j - 1] / lengths[j - 1]
                held_s = tail_s * (1.0 - math.exp(-lengths[j] / tail_s))  # exponential decay
                added_j[j] = max(work_w - base[j] / lengths[j], 0.0) * held_s
                base[j] += added_j[j]
                # the work's power where it stopped is its mean only within how much it varies:
                # as seen around, or, for a phase wholly inside the refresh (nothing seen of
                # it), anywhere from the gap's power to twice the mean above it
                varies_w = max((abs(w - work_w) for t, w in samples
                                if t1 - period_s <= t <= cuts[j] and self.in_phase(t)),
                               default=0.0)
                if j > 1:
                    varies_w = max(varies_w, work_w - base[j] / lengths[j])
                stop_w[j] = held_s * varies_w
            # a gap opening the refresh, after a phase that ended in the one before, holds
            # what is left of that phase's decay
            if (not in_phase[0] and r_prev is None and c0 is not None and lengths[0] > 0
                    and lo > 0 and self._marks[lo - 1][1] == "end"):
                since_s = t1 - self._marks[lo - 1][0]
                work_w = self.rate(cm, c0, period_s) or self._work_w(c0, c1, floor_w)
                added_j[0] = max(work_w - floor_w, 0.0) * tail_s * math.exp(-since_s / tail_s) * (
                    1.0 - math.exp(-lengths[0] / tail_s))
                base[0] += added_j[0]
            energy = _distribute(e_int, base, lengths, takers, free)
        prev_dev = _deviation(r_prev, self.rate(cm, c0, period_s), samples, c0, c1)
        next_dev = _deviation(r_next, self.rate(c3, c4, period_s), samples, c2, c3)
        interval_w = e_int / (t2 - t1)
        floor_sd_w = _uniform_sd(self.gap_levels(changes, period_s, t1))
        tail_sd = self.tail_sd
        sds: list[float] = []
        for j in range(n):
            if priors[j] is None:  # took the rest: its error is the others'
                level_j = 0.0
            elif j == 0 and r_prev is not None:
                dev_w = prev_dev if prev_dev is not None else abs(r_prev - interval_w)
                level_j = lengths[j] * dev_w / math.sqrt(3.0)
            elif j == n - 1 and r_next is not None:
                dev_w = next_dev if next_dev is not None else abs(r_next - interval_w)
                level_j = lengths[j] * dev_w / math.sqrt(3.0)
            else:  # a gap at the power between phases
                level_j = lengths[j] * floor_sd_w
            # plus the decay after a phase: its length, and the level it decayed from
            sds.append(math.hypot(level_j, added_j[j] * tail_sd, stop_w[j] / math.sqrt(3.0)))
        # the refresh times are known to the grid's jitter: the power at each end times it
        if lengths[0] > 0:
            sds[0] = math.hypot(sds[0], jitter_s * energy[0] / lengths[0])
        if lengths[-1] > 0:
            sds[-1] = math.hypot(sds[-1], jitter_s * energy[-1] / lengths[-1])
        kept = sum(b for j, b in enumerate(base) if j not in takers)
        if takers == fixed or kept > e_int:
            # Every piece had a level and they were scaled to the refresh's energy: what
            # they missed it by is one draw of the sum of their errors. Levels that missed
            # by more than their stated spread allows were off by more: widen them to it.
            predicted_j = math.sqrt(sum(sd * sd for sd in sds))
            missed_j = abs(e_int - sum(base))
            if missed_j > predicted_j > 0:
                sds = [sd * missed_j / predicted_j for sd in sds]
        if kept > e_int:  # nothing left for the takers: every piece was scaled down
            shares = list(base)
        else:
            shares = [(lengths[j] if j in free else base[j]) if j in takers else 0.0
                      for j in range(n)]
        total = sum(shares)
        shares = [w / total for w in shares] if total > 0 else [1.0 / n] * n
        return Split([(cuts[j], cuts[j + 1], energy[j]) for j in range(n)], sds, shares)


def _uniform_sd(levels: Sequence[float]) -> float:
    """The standard deviation of a level known only to lie within what was seen."""
    return (max(levels) - min(levels)) / math.sqrt(12.0) if len(levels) > 1 else 0.0


def _deviation(
    level_w: float | None, beyond_w: float | None, samples: Sequence[tuple[float, float]],
    a: Refresh | None, b: Refresh | None,
) -> float | None:
    """How far the power of the work in refresh ``[a, b]`` strays from its mean ``level_w``:
    the refresh beyond it and the instant-power samples read in it; None when neither."""
    if level_w is None or a is None or b is None:
        return None
    seen = [w for t, w in samples if a.t_s <= t <= b.t_s]
    if beyond_w is not None:
        seen.append(beyond_w)
    return max((abs(w - level_w) for w in seen), default=None)


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
