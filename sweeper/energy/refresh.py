"""The refresh grid of a cumulative counter that only changes every so often (NVML: ~100 ms).

A boundary read of such a counter returns the value of the last refresh, so a phase boundary
taken from it is late by up to one refresh (~67 J at 670 W on an H200). This module watches
the counter, learns its refresh period and phase from when the value changes (no period is
assumed: GPUs differ), and puts a boundary's energy between the refreshes on either side.

Evidence behind the model (the H200 recording in the project's gpu-traces): refreshes sit
on a stable grid (period 100.004 ms, residuals within +-3 ms over 45 s, no drift); the value
a refresh reports is the energy up to the refresh itself, not a lagged one (an increment
tracks its own gap length, correlation 0.98 at constant power, and pulse energy already
shows in a refresh 0.7-4.7 ms after the pulse was launched), so no lag is modelled.

Estimate at a boundary ``t`` inside refresh interval ``[t1, t2]`` (values ``E1``, ``E2``):
the interval's energy is split where the work is (``RefreshTimeline.split``). The sampler
marks where each phase begins and ends, and sweeper synchronises the device at both, so
power steps there: a piece of the interval that continues into a neighbouring interval
holds that interval's power, a gap between phases holds the device's power between phases
(plus the decay after a phase ends, learned from phase ends), and a phase piece takes the
rest, bursts shorter than a refresh included. With no phase boundary known in the interval
(the run's own start and end), ``E1 + (t - t1) / (t2 - t1) * (E2 - E1)``. Splitting evenly
was off by 30-70% at 50 ms and missed the 1% target at 1 s on phases that are the work
(benchmarks/phase_accuracy.py); on windows cut through continuous load, where power does
not step at the edges, the even split is the better guess, and the uncertainty says so.
The uncertainty, where the interval is split where the work is, is a 95% interval from the
split's model of its levels' errors (``sweeper.energy.attribution``) and from where the
refreshes it rests on really were: each refresh's value is the energy up to when it
happened, which is on the grid within the jitter and inside the bracket of reads that saw
it (``time_sd_s``), and moving it moves every piece and rate that uses it, so the split is
redone with each of the four refresh times moved (``_timing_terms``). Boundaries that rest
on the same refresh or split share those errors (``BoundaryEnergy.shared``), so a phase
between them adds them term by term (a piece's share of the jitter at its own end alone
missed the rates extrapolated from a refresh, and that the reads pin a refresh down).
Without a split it is the range of splits that the power seen around the boundary allows:
power within the interval's mean +- the largest deviation seen nearby (the neighbouring
intervals' means, and instant-power samples, which catch bursts shorter than a refresh)
moves the split by up to that deviation times the shorter side; plus the refresh timing
jitter times power.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from dataclasses import dataclass

from sweeper.energy.attribution import PhaseMarks, Split

DENSE_READ_S = 0.002  # read spacing while the period is unknown, and around each refresh
LEARN_FOR_S = 2.0  # give up learning (and fall back to plain reads) after this long
LEARN_POINTS = 5  # consecutive narrowly timed refreshes before a period is trusted
MIN_PERIOD_S = 0.005
# Below this period watching each refresh would cost more CPU than the error it removes
# (at most one period of power per boundary), so only the sampler's own reads are used.
WATCH_MIN_PERIOD_S = 0.02
MAX_PERIOD_S = 2.0
# A split's uncertainty is this many standard deviations: 95% of a normal error, two-sided.
COVERAGE_Z = 1.96
TIMING_STEP_S = 1e-5  # the step of the refresh-time derivative (boundaries are further)
HISTORY = 600  # refreshes kept (a minute at 100 ms); boundaries resolve within ~0.3 s


@dataclass
class Change:
    """The counter took ``value_j`` at a refresh inside ``(lo_s, hi_s]``."""

    lo_s: float
    hi_s: float
    value_j: float
    t_s: float  # best estimate of the refresh time


@dataclass(frozen=True)
class _Seen:
    """What a boundary's splits read, copied once for the split and its redone ones: the
    refreshes kept, the six around the boundary's interval, the instant-power samples."""

    changes: list[Change]
    around: tuple[Change | None, ...]
    samples: list[tuple[float, float]]


# A boundary's uncertainty from a refresh split, per (refresh time, piece): joules, signed;
# piece -1 is the refresh's own time (its jitter), which neighbouring splits rest on too.
SharedTerms = tuple[tuple[tuple[float, int], float], ...]


@dataclass(frozen=True)
class BoundaryEnergy:
    """Cumulative energy at a boundary, how uncertain it is, and how it was obtained."""

    energy_j: float
    uncertainty_j: float
    method: str  # "interpolated" (between refreshes) or "read" (last refresh's value)
    # the part of ``uncertainty_j`` from how a refresh was split, per (refresh, piece), and
    # from when each refresh it rests on happened: boundaries that rest on one refresh share
    # these errors, so a phase between them adds them term by term (the rest of the
    # uncertainty is independent)
    shared: SharedTerms = ()


class RefreshTimeline:
    """Reads of one counter, its refreshes and their grid; all times on one monotonic clock.

    Feed every read with ``observe``; ``next_read_s`` says when a read would timestamp the
    next refresh (reads just before and just after it); ``energy_at`` interpolates.
    """

    def __init__(self) -> None:
        self.changes: deque[Change] = deque(maxlen=HISTORY)
        self._first: tuple[float, float] | None = None  # the first read (t_s, value_j)
        self._times: deque[float] = deque(maxlen=HISTORY)  # changes' t_s, for bisect
        self._last: tuple[float, float] | None = None  # (t_s, value_j) of the latest read
        self._first_read_s: float | None = None
        self.period_s: float | None = None
        self.max_power_w: float | None = None  # the most the device can draw (NvmlMeter)
        self._anchor_s = 0.0  # a refresh time on the grid
        self._fit: deque[float] = deque(maxlen=64)  # narrow-bracket refresh times
        self.jitter_s = 0.0
        self._misses = 0
        self.gave_up = False
        self.power_samples: deque[tuple[float, float]] = deque(maxlen=64)  # (t_s, power_w)
        # the instant field's own pace, which need not be the counter's (``observe_field``)
        self.field_period_s: float | None = None
        self._field_gaps: deque[float] = deque(maxlen=64)
        self._field_change_s: float | None = None  # its last narrowly timed refresh
        self._field_last: tuple[float, float] | None = None  # its last read (t_s, power_w)
        self.marks = PhaseMarks()  # where phases begin and end: where the work is

    def mark(self, t_s: float, edge: str) -> None:
        """A phase boundary at ``t_s``: "begin" (the phase's work follows it) or "end" (the
        work precedes it: sweeper synchronises the device before closing a phase)."""
        self.marks.mark(t_s, edge)

    # ------------------------------------------------------------------ learning

    def observe_power(self, t_s: float, power_w: float) -> None:
        """An instant-power reading: it widens the uncertainty where power varies within a
        refresh (it is never used for the energy itself)."""
        self.observe_field(t_s, power_w)
        self.power_samples.append((t_s, power_w))

    @property
    def learning_field(self) -> bool:
        """Whether the instant field's pace is still being learned: its reads help until
        it is, or until ``LEARN_FOR_S`` of trying."""
        return (self.field_period_s is None and not self.gave_up
                and (self._first_read_s is None or self._last is None
                     or self._last[0] - self._first_read_s <= LEARN_FOR_S))

    def next_field_read_s(self) -> float | None:
        """When the instant field should next be read to time its refreshes (reads
        ``DENSE_READ_S`` apart from the first sample on, apart from the counter's, which
        they leave as they are), or None once its pace is learned or given up."""
        if self._field_last is None or not self.learning_field:
            return None
        return self._field_last[0] + DENSE_READ_S

    def observe_field(self, t_s: float, power_w: float) -> None:
        """A read of the instant-power field: the gaps between its refreshes, each timed by
        two reads ``DENSE_READ_S`` apart, give its pace (``field_period_s``: how old a
        sample's value may be). It is not the counter's period on every card: the H200's
        field refreshes on a wandering pace of its own, ~101 ms apart, and a card whose
        counter refreshed every 20 ms would still show samples 100 ms old. A gap counts
        only where every read since the last refresh was dense (a value that held over a
        longer stretch may hide a refresh), and under 1.5 times the shortest (longer: a
        refresh that repeated its value, as the recording's field does at times); the
        pace is their median once ``LEARN_POINTS`` are seen."""
        last, self._field_last = self._field_last, (t_s, power_w)
        if last is None or t_s - last[0] > 2.5 * DENSE_READ_S:
            self._field_change_s = None
            return
        if power_w == last[1]:
            return
        change_s = 0.5 * (last[0] + t_s)
        if self._field_change_s is not None:
            self._field_gaps.append(change_s - self._field_change_s)
            single = [g for g in self._field_gaps if g < 1.5 * min(self._field_gaps)]
            if len(single) >= LEARN_POINTS:
                self.field_period_s = statistics.median(single)
        self._field_change_s = change_s

    def observe(self, t_s: float, value_j: float, end_s: float | None = None) -> None:
        """One read of the counter, called at ``t_s`` and returned at ``end_s`` (same if
        None). A refresh seen by this read happened after the previous read was called and
        before this one returned, whatever the thread was doing in between."""
        end_s = t_s if end_s is None else end_s
        if self._first_read_s is None:
            self._first_read_s = t_s
        if self._first is None:
            self._first = (t_s, value_j)
        last = self._last
        self._last = (t_s, value_j)
        if last is None or value_j == last[1] or end_s <= last[0]:
            return
        change = Change(last[0], end_s, value_j, 0.5 * (last[0] + end_s))
        narrow = change.hi_s - change.lo_s <= max(2.5 * DENSE_READ_S, 0.1 * (self.period_s or 0))
        if narrow:
            self._learn(change.t_s)
        if self.period_s is not None:
            change.t_s = self._on_grid(change)
        self.changes.append(change)
        self._times.append(change.t_s)
        if self.marks and self.period_s is not None and len(self.changes) >= 6:
            last = [self.changes[i] for i in range(-6, 0)]
            self.marks.learn_tail(last, self.period_s, self.refresh_sd_s)
            self.marks.learn_launch(last, self.period_s, self.refresh_sd_s)

    def _learn(self, t_s: float) -> None:
        self._fit.append(t_s)
        pts = list(self._fit)
        if self.period_s is None:
            if len(pts) < LEARN_POINTS:
                return
            recent = pts[-LEARN_POINTS:]
            gaps = [b - a for a, b in zip(recent, recent[1:], strict=False)]
            p = statistics.median(gaps)
            if not MIN_PERIOD_S <= p <= MAX_PERIOD_S or any(abs(g - p) > 0.05 * p for g in gaps):
                return
            # least squares over the consecutive refreshes, not just their median gap
            n_mean, t_mean = (len(recent) - 1) / 2, statistics.fmean(recent)
            p = sum((n - n_mean) * (t - t_mean) for n, t in enumerate(recent)) / sum(
                (n - n_mean) ** 2 for n in range(len(recent)))
            self.period_s, self._anchor_s = p, t_mean + (len(recent) - 1 - n_mean) * p
            self._fit = deque(recent, maxlen=64)
            self._place_history()
            return
        period = self.period_s
        n_new = (t_s - self._anchor_s) / period
        if abs(n_new - round(n_new)) > 0.25:  # off the grid: a glitch, or the grid moved
            self._fit.pop()
            self._misses += 1
            if self._misses >= 3:
                self._relearn()
            return
        self._misses = 0
        # least squares t = a + n * P over the recent narrow refreshes
        ns = [round((t - self._anchor_s) / period) for t in self._fit]
        if len(set(ns)) >= 2:
            n_mean = statistics.fmean(ns)
            t_mean = statistics.fmean(self._fit)
            sxx = sum((n - n_mean) ** 2 for n in ns)
            p = sum((n - n_mean) * (t - t_mean) for n, t in zip(ns, self._fit, strict=True)) / sxx
            if MIN_PERIOD_S <= p <= MAX_PERIOD_S and abs(p - period) < 0.05 * period:
                self.period_s = p
                self._anchor_s = t_mean - n_mean * p + round(n_mean) * p
                res = [t - (self._anchor_s + (n - round(n_mean)) * p)
                       for n, t in zip(ns, self._fit, strict=True)]
                self.jitter_s = math.sqrt(statistics.fmean(r * r for r in res))

    def _place_history(self) -> None:
        """Once the grid is known: put the changes seen while learning on it, and give the
        first read's value its refresh (the grid point before that read), so a boundary
        right after the first read can be interpolated too."""
        for c in self.changes:
            c.t_s = self._on_grid(c)
        if self._first is not None and (not self.changes or self.changes[0].lo_s > -math.inf):
            t_f, v_f = self._first
            g = self._grid_time(t_f)
            if g > t_f:
                g -= self.period_s or 0.0
            if not self.changes or (self.changes[0].value_j != v_f and self.changes[0].t_s > g):
                self.changes.appendleft(Change(-math.inf, t_f, v_f, g))
        self._times = deque((c.t_s for c in self.changes), maxlen=HISTORY)

    def _relearn(self) -> None:
        self.period_s = None
        self._fit.clear()
        self._misses = 0
        self._first_read_s = self._last[0] if self._last else None
        self.gave_up = False

    def _grid_time(self, t_s: float) -> float:
        assert self.period_s is not None
        n = round((t_s - self._anchor_s) / self.period_s)
        return self._anchor_s + n * self.period_s

    def _on_grid(self, change: Change) -> float:
        """The last grid refresh inside the change's bracket (the value read at its end is
        that refresh's); if the grid has none there (a refresh early or late by its
        jitter), the bracket's time nearest the grid."""
        assert self.period_s is not None
        g = self._grid_time(change.hi_s)
        if g > change.hi_s:
            g -= self.period_s
        if g > change.lo_s or change.lo_s == -math.inf:
            return g
        return change.hi_s if g + self.period_s - change.hi_s < change.lo_s - g else change.lo_s

    # ------------------------------------------------------------------ scheduling

    def next_read_s(self, now_s: float) -> float | None:
        """When the next read should happen to keep every refresh timestamped, or None."""
        if self._last is None:
            return now_s
        last_read = self._last[0]
        if self.period_s is None:
            if self.gave_up:
                return None
            if self._first_read_s is not None and now_s - self._first_read_s > LEARN_FOR_S:
                self.gave_up = True  # no regular refresh here: plain reads only
                return None
            return last_read + DENSE_READ_S
        p = self.period_s
        if p < WATCH_MIN_PERIOD_S:  # fast enough that the sampler's own reads suffice
            return None
        ref_s = self.changes[-1].t_s if self.changes else last_read
        g = self._grid_time(ref_s) + p  # the refresh after the last one seen
        while g + 0.4 * p < last_read:  # not seen within 0.4 periods: look for the next
            g += p
        before = g - 1.5 * DENSE_READ_S
        if last_read < before:
            return before
        return last_read + DENSE_READ_S  # read until it shows, for a narrow bracket

    def _split(self, seen: _Seen, i: int, moved: Change | None = None,
               k: int = -1) -> Split | None:
        """The split of the refresh interval ``changes[i-1], changes[i]`` (``seen.around``:
        the refreshes ``cm, c0, c1, c2, c3, c4`` of it); ``moved`` replaces ``around[k]``."""
        changes, around = seen.changes, seen.around
        if moved is not None:
            changes = list(changes)
            changes[i - 3 + k] = moved
            around = tuple(moved if j == k else c for j, c in enumerate(around))
        cm, c0, c1, c2, c3, c4 = around
        assert self.period_s is not None and c1 is not None and c2 is not None
        return self.marks.split(changes, self.period_s, c0, c1, c2, c3, cm, c4,
                                seen.samples, self.refresh_sd_s, self.max_power_w,
                                self.field_period_s)

    def _timing_terms(self, seen: _Seen, i: int, t_s: float,
                      est_j: float) -> list[tuple[Change, float]]:
        """How the estimate at ``t_s`` moves (J, one standard deviation) with where each
        refresh it rests on really was: the split is redone with that refresh's time moved
        (a central difference, scaled to ``time_sd_s``; one-sided where a move would pass
        the boundary). A refresh's value is the energy up to when it happened, so each
        time's error moves every piece and rate that uses it; boundaries that rest on one
        refresh share its term."""
        out: list[tuple[Change, float]] = []
        around = seen.around
        for k in (1, 2, 3, 4):  # c0..c3: the interval's ends and its neighbours'
            c = around[k]
            if c is None or not 0 <= i - 3 + k < len(self.changes):
                continue
            sd_s = self.time_sd_s(c)
            if sd_s <= 0:
                continue
            moved: dict[float, float] = {0.0: est_j}
            for dt in (TIMING_STEP_S, -TIMING_STEP_S):
                shifted = Change(c.lo_s, c.hi_s, c.value_j, c.t_s + dt)
                lo, hi = (shifted if k == 2 else around[2]), (shifted if k == 3 else around[3])
                if lo is None or hi is None or not lo.t_s < t_s < hi.t_s:
                    continue
                split = self._split(seen, i, shifted, k)
                if split is not None:  # before holding: holding is not smooth in the times
                    moved[dt] = _split_at(split.smooth(), lo.value_j, t_s)
            hi_dt, lo_dt = max(moved), min(moved)
            if hi_dt > lo_dt:
                out.append((c, (moved[hi_dt] - moved[lo_dt]) / (hi_dt - lo_dt) * sd_s))
        return out

    def behind_j(self, t_s: float) -> float | None:
        """The most a read at ``t_s`` can be behind the energy at ``t_s``: the energy of the
        refresh interval around it; None until the refresh after ``t_s`` is seen."""
        i = bisect.bisect_right(self._times, t_s)
        if 0 < i < len(self.changes):
            return abs(self.changes[i].value_j - self.changes[i - 1].value_j)
        return None

    def time_sd_s(self, change: Change) -> float:
        """How far ``change.t_s`` may be from when the refresh happened (RMS, s): the refresh
        lies in its bracket (between the reads either side) and on the grid within
        ``refresh_sd_s`` (a normal around the grid time, cut to the bracket), and ``t_s``
        is the grid time, or the bracket's end nearest it."""
        sd_s = self.refresh_sd_s
        if self.period_s is None or sd_s <= 0 or change.lo_s == -math.inf:
            return sd_s
        g = self._grid_time(change.t_s)
        prior = statistics.NormalDist(g, sd_s)
        a, b = (change.lo_s - g) / sd_s, (change.hi_s - g) / sd_s
        mass = prior.cdf(change.hi_s) - prior.cdf(change.lo_s)
        if mass < 1e-9:  # the grid is far from this bracket: the bracket is all there is
            return (change.hi_s - change.lo_s) / math.sqrt(12.0)
        pdf = statistics.NormalDist().pdf
        mean_s = g + sd_s * (pdf(a) - pdf(b)) / mass
        var_s = sd_s**2 * (1 + (a * pdf(a) - b * pdf(b)) / mass
                           - ((pdf(a) - pdf(b)) / mass) ** 2)
        return math.sqrt(max(var_s, 0.0) + (mean_s - change.t_s) ** 2)

    @property
    def refresh_sd_s(self) -> float:
        """How far a refresh may be from its time on the grid (standard deviation): the
        grid's residuals less the spread of timing a refresh by the middle of two reads
        ``DENSE_READ_S`` apart (uniform, so that width over sqrt(12)); at least that spread,
        which is all the reads can tell."""
        bracket_sd_s = DENSE_READ_S / math.sqrt(12.0)
        return max(math.sqrt(max(self.jitter_s**2 - bracket_sd_s**2, 0.0)), bracket_sd_s)

    # ------------------------------------------------------------------ boundaries

    def energy_at(self, t_s: float, *, final: bool = False) -> BoundaryEnergy | None:
        """Cumulative counter value at ``t_s`` interpolated between refreshes, or None while
        the refreshes needed are not seen yet. ``final`` takes what there is (at stop).

        Raises LookupError when it never can be (no regular refresh found, ``t_s`` before
        the history, or at ``final`` without a refresh after ``t_s``): use the read value.
        """
        if self.period_s is None:
            if self.gave_up or final:
                raise LookupError("no refresh period learned for this counter")
            return None
        i = bisect.bisect_right(self._times, t_s)  # changes[i] is the first refresh after t
        if i == 0:
            raise LookupError("the boundary precedes the refreshes kept")
        if i >= len(self.changes):
            if final:
                raise LookupError("no refresh was seen after the boundary")
            return None
        c1, c2 = self.changes[i - 1], self.changes[i]
        c0 = self.changes[i - 2] if i >= 2 else None
        c3 = self.changes[i + 1] if i + 1 < len(self.changes) else None
        if c3 is None and not final:
            return None
        t1, t2 = c1.t_s, c2.t_s
        e1, e2 = c1.value_j, c2.value_j
        span = t2 - t1
        if span <= 0:
            return BoundaryEnergy(e1, abs(e2 - e1), "interpolated")
        r_int = (e2 - e1) / span
        r_prev = (e1 - c0.value_j) / (t1 - c0.t_s) if c0 and t1 > c0.t_s else r_int
        r_next = (c3.value_j - e2) / (c3.t_s - t2) if c3 and c3.t_s > t2 else r_int
        a, b = t_s - t1, t2 - t_s
        cm = self.changes[i - 3] if i >= 3 else None
        c4 = self.changes[i + 2] if i + 2 < len(self.changes) else None
        seen = _Seen(list(self.changes), (cm, c0, c1, c2, c3, c4), list(self.power_samples))
        split = self._split(seen, i)
        est = e1 + (e2 - e1) * a / span if split is None else _split_at(split, e1, t_s)
        # How far power strays from the interval's mean within a refresh: the neighbouring
        # intervals' means and instant-power samples nearby (which catch sub-refresh bursts).
        # Power within r_int +- dev splits the interval's energy at t within +- dev * min(a, b).
        around = [w for t, w in self.power_samples if t1 - span <= t <= t2 + span]
        dev = max(abs(r - r_int) for r in (r_prev, r_next, *around))
        spread = dev * min(a, b)
        p_hi = r_int + dev
        e_int = e2 - e1
        skipped = span > 1.5 * self.period_s  # refreshes without a read in between
        timing = (self.jitter_s + 0.5 * DENSE_READ_S) * p_hi
        shared: SharedTerms = ()
        if split is not None:  # split where the work is: off by what its levels may be,
            # and by where the refreshes around it really were
            shared = tuple(((t1, j), COVERAGE_Z * c)
                           for j, c in enumerate(split.terms_at(t_s)) if c != 0.0)
            # the derivative of the split before pieces were held within what the device
            # can draw: holding them is not smooth in the refresh times
            smooth_j = _split_at(split.smooth(), e1, t_s)
            shared += tuple(((c.t_s, -1), COVERAGE_Z * d)
                            for c, d in self._timing_terms(seen, i, t_s, smooth_j) if d != 0.0)
            spread = math.sqrt(sum(c * c for _, c in shared))
            timing = 0.0  # in the terms of each refresh's time
        unc = spread + timing + (0.5 * e_int if skipped else 0.0)
        return BoundaryEnergy(est, unc, "interpolated", shared)


def _split_at(split: Split, start_j: float, t_s: float) -> float:
    """The cumulative energy at ``t_s``: the refresh's value at its start plus the split's
    pieces up to ``t_s`` (a piece cut by ``t_s`` in proportion to its length)."""
    est = start_j
    for p_lo, p_hi, p_j in split.pieces:
        if t_s >= p_hi:
            est += p_j
        elif t_s > p_lo:
            est += p_j * (t_s - p_lo) / (p_hi - p_lo)
    return est
