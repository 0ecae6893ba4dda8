"""One fake ``pynvml`` for every test that needs NVML, with an emulated NVIDIA H200.

``FakeNvml`` answers the pynvml calls sweeper makes. Its devices are either

* ``FakeGpu``: values the test sets by hand (``gpu.counter_mj = ...``), for mapping, error
  and fallback tests; or
* ``EmulatedGpu``: a known power signal ``P(t)`` on a controllable ``Clock``, integrated
  exactly, and exposed only as the H200 in ``/work/shared/gpu-traces`` exposes it: the
  energy counter (mJ), ``GetPowerUsage`` (a trailing 1 s mean, mW) and the
  ``NVML_FI_DEV_POWER_INSTANT`` field each change only at refreshes every ~100 ms, and are
  constant in between. The counter refreshes on a grid with the recording's jitter (gap
  5th-95th percentile ~98-102.5 ms); the two power readings refresh together, as the
  recording's do, at gaps drawn from the recording's own (101.4 +- 3.2 ms, each
  independent of the last: no grid, their phase against the counter's wanders).
  ``energy_j(t)`` is the exact integral, so tests and ``benchmarks/phase_accuracy.py`` can
  score any method against the truth.

``RecordedGpu`` replays the recording itself (tests/data): every reading is the last poll
before now, so the real refresh times and jitter (no exact truth there). ``work_session``,
``epoch_session`` and ``play_phases`` build signals whose phases are the work, as sweeper's
are (power steps where a phase opens and closes, then decays); ``measure_work_phases``,
``measure_session`` and ``measure_recording`` measure them with the real meter and sampler.

``h200_session()`` builds the recorded session's signal from the recording's levels and
shapes: 82 W bare idle, ~124 W idle with a CUDA context, a 4 s heavy matmul (780 W for the
first 0.2 s, then ~690 W), 30 ms bursts every ~100 ms, small-net training, ten 50 ms pulses
0.5 s apart; every load ends with a ~30 ms decaying tail, as the counter shows after pulses.
Steps fall at arbitrary offsets from the refreshes and there is structure finer than one
refresh, so a method that only works for signals constant between refreshes shows it.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

H200_PERIOD_S = 0.100004  # counter refresh period measured over 449 refreshes
H200_JITTER_S = 0.001  # per-refresh jitter around the grid: gap 5-95th pct ~97.7-102.3 ms
H200_LIMIT_MW = 700_000
H200_MIN_LIMIT_MW = 200_000
NVML_FI_DEV_POWER_INSTANT = 186  # as in pynvml
NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4


class NVMLError(Exception):
    value: int | None = None  # pynvml's error code, as ``NVMLError.value``


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    value = NVML_ERROR_NOT_SUPPORTED


class NVMLError_NoPermission(NVMLError):  # noqa: N801 - pynvml's name
    value = NVML_ERROR_NO_PERMISSION


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801 - pynvml's name
    value = NVML_ERROR_INVALID_ARGUMENT


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's name
    pass


class Clock:
    """A clock the test moves: pass it to the meter, the sampler and the emulated GPU."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t  # seconds

    def __call__(self) -> float:
        return self.t

    def advance(self, dt_s: float) -> None:
        self.t += dt_s


# ----------------------------------------------------------------------------- signal


class PowerSignal:
    """Piecewise-constant power: ``powers_w[i]`` from ``times_s[i]`` to the next time (the
    last level holds forever, and the first before the start). Integrated exactly."""

    def __init__(self, times_s: Sequence[float], powers_w: Sequence[float]) -> None:
        if len(times_s) != len(powers_w) or not times_s:
            raise ValueError("times_s and powers_w must be non-empty and of equal length")
        if any(b <= a for a, b in zip(times_s, times_s[1:], strict=False)):
            raise ValueError("times_s must increase")
        self.times_s = list(times_s)
        self.powers_w = list(powers_w)
        self._cum_j = [0.0]
        for i in range(1, len(self.times_s)):
            dt = self.times_s[i] - self.times_s[i - 1]
            self._cum_j.append(self._cum_j[-1] + self.powers_w[i - 1] * dt)

    def power_w(self, t_s: float) -> float:
        i = bisect.bisect_right(self.times_s, t_s) - 1
        return self.powers_w[max(i, 0)]

    def energy_j(self, t_s: float) -> float:
        """Exact integral of the power from ``times_s[0]`` to ``t_s`` (negative before it)."""
        i = bisect.bisect_right(self.times_s, t_s) - 1
        if i < 0:
            return self.powers_w[0] * (t_s - self.times_s[0])
        return self._cum_j[i] + self.powers_w[i] * (t_s - self.times_s[i])

    def mean_w(self, t0_s: float, t1_s: float) -> float:
        return (self.energy_j(t1_s) - self.energy_j(t0_s)) / (t1_s - t0_s)

    @property
    def end_s(self) -> float:
        return self.times_s[-1]


class _SignalBuilder:
    def __init__(self, t0_s: float, seed: int) -> None:
        self.t_s = t0_s
        self.times: list[float] = []
        self.powers: list[float] = []
        self.rng = random.Random(seed)

    def hold(self, power_w: float, dt_s: float) -> None:
        self.times.append(self.t_s)
        self.powers.append(power_w)
        self.t_s += dt_s

    def noisy(self, mean_w: float, sd_w: float, dt_s: float, seg_s: tuple[float, float]) -> None:
        end = self.t_s + dt_s
        while self.t_s < end - 1e-9:
            self.hold(self.rng.gauss(mean_w, sd_w), min(self.rng.uniform(*seg_s), end - self.t_s))

    def play(self, pieces: Iterator[tuple[float, float]], dt_s: float) -> None:
        """Hold ``(power_w, duration_s)`` pieces until ``dt_s`` has passed (the last one cut)."""
        end = self.t_s + dt_s
        for power_w, piece_s in pieces:
            if self.t_s >= end - 1e-9:
                return
            self.hold(power_w, min(piece_s, end - self.t_s))

    def tail(self, idle_w: float) -> None:
        """The ~30 ms decay after heavy load stops (seen after every pulse and at heavy_end)."""
        for level_w in (450.0, 300.0, 200.0):
            self.hold(max(level_w, idle_w), 0.010)

    def signal(self) -> PowerSignal:
        return PowerSignal(self.times, self.powers)


@dataclass(frozen=True)
class Session:
    """An emulated session: the signal and its named stretches (start_s, end_s)."""

    signal: PowerSignal
    stretches: dict[str, tuple[float, float]]


def h200_session(t0_s: float = 100.0, seed: int = 0) -> Session:
    """The recorded H200 session (see the module docstring), starting at ``t0_s``."""
    b = _SignalBuilder(t0_s, seed)
    marks: dict[str, tuple[float, float]] = {}

    def stretch(name: str, fill: Callable[[], None]) -> None:
        start = b.t_s
        fill()
        marks[name] = (start, b.t_s)

    stretch("bare_idle", lambda: b.noisy(81.9, 1.4, 9.4, (0.01, 0.04)))
    stretch("context_init", lambda: b.noisy(102.0, 8.0, 0.92, (0.02, 0.08)))
    stretch("idle", lambda: b.noisy(124.3, 0.8, 4.0, (0.01, 0.04)))

    def heavy() -> None:
        b.noisy(124.5, 0.8, 0.15, (0.01, 0.03))  # launch and library start-up
        b.hold(780.0, 0.2)  # over the limit until power capping acts (recorded 778 W)
        b.noisy(690.0, 20.0, 3.65, (0.004, 0.015))
        b.tail(126.0)

    stretch("heavy", heavy)
    b.noisy(126.5, 0.8, 1.97, (0.01, 0.04))

    def bursty() -> None:
        for _ in range(40):  # 30 ms bursts every ~100.3 ms (the host's sleep overshoots)
            b.hold(b.rng.gauss(620.0, 15.0), 0.030)
            b.hold(420.0, 0.010)
            b.hold(b.rng.gauss(240.0, 10.0), 0.0603)

    stretch("bursty", bursty)
    b.noisy(125.6, 0.8, 4.8, (0.01, 0.04))

    def train_small() -> None:
        b.noisy(125.0, 0.8, 0.9, (0.01, 0.04))  # data loading before the first step
        b.noisy(312.0, 90.0, 3.1, (0.002, 0.008))  # kernels of a small conv net

    stretch("train_small", train_small)

    def pulsed() -> None:
        for _ in range(10):  # 50 ms of heavy load every 0.5 s, ~38 J above idle each
            b.noisy(125.0, 0.8, 0.002, (0.002, 0.002))
            b.hold(760.0, 0.050)
            b.tail(125.0)
            b.noisy(125.0, 0.8, 0.418, (0.01, 0.04))

    stretch("pulsed", pulsed)
    b.noisy(124.8, 0.8, 3.0, (0.01, 0.04))
    b.hold(124.8, 0.0)
    return Session(b.signal(), marks)


# ------------------------------------------------------------------ phases that are the work

WORK_KINDS = ("idle", "heavy", "bursty", "pulsed", "train_small")
CONTEXT_IDLE_W = 124.3


def _work(
    kind: str, rng: random.Random, length_s: float = math.inf
) -> Iterator[tuple[float, float]]:
    """The load of one stretch of the recording, from its first kernel on, as pieces, for a
    phase of ``length_s`` (a pulse that would not end within it is not launched: the
    phase closes once its work is done)."""
    if kind == "idle":  # a phase that leaves the GPU alone (host-bound work)
        while True:
            yield rng.gauss(CONTEXT_IDLE_W, 0.8), rng.uniform(0.01, 0.04)
    elif kind == "heavy":
        yield 780.0, 0.2  # over the limit until power capping acts
        while True:
            yield rng.gauss(690.0, 20.0), rng.uniform(0.004, 0.015)
    elif kind == "bursty":
        while True:
            yield rng.gauss(620.0, 15.0), 0.030
            yield 420.0, 0.010
            yield rng.gauss(240.0, 10.0), 0.0603
    elif kind == "pulsed":
        t_s = 0.0
        while True:
            if t_s > 0 and t_s + 0.050 > length_s + 1e-9:
                yield from _work("idle", rng)
            yield 760.0, 0.050
            yield from ((450.0, 0.010), (300.0, 0.010), (200.0, 0.010))
            for _ in range(14):
                yield rng.gauss(125.0, 0.8), 0.0299
            t_s += 0.050 + 0.030 + 14 * 0.0299
    elif kind == "train_small":
        while True:
            yield rng.gauss(312.0, 90.0), rng.uniform(0.002, 0.008)
    else:
        raise ValueError(f"unknown work kind {kind!r}; one of {WORK_KINDS}")


def _decay(from_w: float, idle_w: float = CONTEXT_IDLE_W) -> Iterator[tuple[float, float]]:
    """The ~30 ms decay once the work stops, from the level it stopped at (the recording's
    after a 760 W pulse: 450, 300, 200 W for ~10 ms each, i.e. 51%, 28%, 12% of the drop)."""
    for share in (0.51, 0.28, 0.12):
        yield idle_w + share * max(from_w - idle_w, 0.0), 0.010


@dataclass(frozen=True)
class WorkSession:
    """An emulated session whose phases are the work: ``phases`` are (start_s, end_s), and
    ``kinds`` the load each ran."""

    signal: PowerSignal
    phases: list[tuple[float, float]]
    kinds: list[str]
    lead_in_s: float  # end of the idle lead-in (the meter learns the refresh grid there)


def play_phases(plan: Sequence[tuple[str, float, float]], seed: int = 0,
                t0_s: float = 100.0) -> WorkSession:
    """Phases from ``(kind, length_s, gap_after_s)``, as sweeper's phases are: the GPU
    rises 1-5 ms after a phase opens (kernel launch), runs the ``kind`` stretch's load until
    the phase closes (sweeper synchronises before closing it), then decays over ~30 ms
    towards context idle, until the next phase opens. 3 s of context idle come first."""
    b = _SignalBuilder(t0_s, seed)
    rng = b.rng
    b.play(_work("idle", rng), 3.0)
    lead_in_s = b.t_s
    phases: list[tuple[float, float]] = []
    for kind, length_s, gap_s in plan:
        start = b.t_s
        latency_s = min(rng.uniform(0.001, 0.005), 0.5 * length_s)
        b.play(_work("idle", rng), latency_s)
        b.play(_work(kind, rng, length_s - latency_s), length_s - latency_s)
        phases.append((start, b.t_s))
        if kind != "idle":
            b.play(_decay(b.powers[-1]), gap_s)
        b.play(_work("idle", rng), start + length_s + gap_s - b.t_s)
    b.play(_work("idle", rng), 1.5)
    b.hold(CONTEXT_IDLE_W, 0.0)
    return WorkSession(b.signal(), phases, [k for k, _, _ in plan], lead_in_s)


def work_session(
    kind: str, length_s: float, n: int, seed: int = 0, t0_s: float = 100.0
) -> WorkSession:
    """``n`` phases of ``length_s`` running the ``kind`` load (``play_phases``). Gaps are
    1-10 ms (back to back) or 20-400 ms, so boundaries fall at any offset from the
    refreshes and often two share one refresh interval."""
    rng = random.Random(seed * 104729 + 1)
    plan = [
        (kind, length_s,
         rng.uniform(0.001, 0.010) if rng.random() < 0.3 else rng.uniform(0.02, 0.4))
        for _ in range(n)
    ]
    return play_phases(plan, seed, t0_s)


def epoch_session(
    eval_s: float, epochs: int, seed: int = 0, train_s: float = 1.0, t0_s: float = 100.0
) -> WorkSession:
    """An epoch loop as sweeper runs one: ``train_s`` of small-net training, then an
    evaluation of ``eval_s`` at heavy load, back to back (1-5 ms between phases, the
    recorder's writes)."""
    rng = random.Random(seed * 104729 + 2)
    plan: list[tuple[str, float, float]] = []
    for _ in range(epochs):
        plan.append(("train_small", train_s, rng.uniform(0.001, 0.005)))
        plan.append(("heavy", eval_s, rng.uniform(0.001, 0.005)))
    return play_phases(plan, seed, t0_s)


# ----------------------------------------------------------------------------- devices


class FakeGpu:
    """A GPU whose readings the test sets by hand. ``counter_mj=None``: no energy counter
    (pre-Volta); ``instant_mw=None``: no instant-power field; ``power_mw=None``: no
    GetPowerUsage; ``max_limit_mw=None``: no limit constraints."""

    def __init__(
        self,
        name: str | bytes = "NVIDIA H100 80GB HBM3",
        power_mw: float | None = 100_000,
        counter_mj: float | None = 0.0,
        *,
        instant_mw: float | None = None,
        enforced_limit_mw: float | None = 300_000,
        management_limit_mw: float = 250_000,
        max_limit_mw: float | None = None,
        fail: bool = False,
        util_pct: int = 87,
        memory_used_b: int = 3 * 2**30,
        stats_fail: bool = False,
        uuid: str = "",
        processes: list[int] | None = None,
        min_limit_mw: float = H200_MIN_LIMIT_MW,
        default_limit_mw: float | None = None,
        can_set_limit: bool = True,
    ) -> None:
        self.name = name
        self.power_mw = power_mw
        self.counter_mj = counter_mj
        self.instant_mw = instant_mw
        self.enforced_limit_mw = enforced_limit_mw
        self.management_limit_mw = management_limit_mw
        self.max_limit_mw = max_limit_mw
        self.fail = fail
        self.util_pct = util_pct
        self.memory_used_b = memory_used_b
        self.stats_fail = stats_fail
        self.uuid = uuid
        # pids of compute processes on it (None: NVML cannot list them)
        self.processes = processes
        self.calls = 0  # energy and power calls, for cost checks
        # Power-limit management: the settable range is [min_limit_mw, max_limit_mw] (none
        # without max_limit_mw); setting needs root (can_set_limit). Every set is logged.
        self.min_limit_mw = min_limit_mw
        self.default_limit_mw = default_limit_mw or max_limit_mw or management_limit_mw
        self.can_set_limit = can_set_limit
        self.limit_sets: list[int] = []


def _refresh_grid(
    start_s: float, end_s: float, period_s: float, jitter_s: float, rng: random.Random
) -> list[float]:
    """Refresh times on a fixed grid with independent jitter (the recording shows no drift)."""
    phase = rng.uniform(0.0, period_s)
    n = int((end_s - start_s) / period_s) + 2
    return [start_s + phase + k * period_s + rng.gauss(0.0, jitter_s) for k in range(-1, n)]


@functools.cache
def _power_field_gaps_s() -> tuple[float, ...]:
    """The gaps between the recording's instant-power field refreshes (under 150 ms: a
    longer one is a refresh that repeated its value). They are not a grid: 101.4 ms apart
    on average, sd 3.2 ms, each independent of the one before (a random walk in phase),
    where the counter's hold to one ~100.0 ms grid."""
    seen = load_recording().field_refreshes_s()
    return tuple(b - a for a, b in zip(seen, seen[1:], strict=False) if b - a < 0.150)


def _power_refreshes(
    start_s: float, end_s: float, period_s: float, rng: random.Random
) -> list[float]:
    """Refresh times of the power readings: the recording's field gaps, drawn at random and
    scaled to ``period_s``, from a random phase."""
    gaps = _power_field_gaps_s()
    scale = period_s / H200_PERIOD_S
    t = start_s - period_s + rng.uniform(0.0, period_s)
    out = [t]
    while t < end_s + period_s:
        t += scale * rng.choice(gaps)
        out.append(t)
    return out


class EmulatedGpu(FakeGpu):
    """An H200 driven by a power signal on a clock; readings change only at refreshes."""

    def __init__(
        self,
        signal: PowerSignal,
        clock: Callable[[], float],
        *,
        seed: int = 0,
        period_s: float = H200_PERIOD_S,
        jitter_s: float = H200_JITTER_S,
        field_period_s: float | None = None,  # the power readings' pace (None: the counter's)
        has_counter: bool = True,
        has_instant: bool = True,
        counter_at_load_mj: float = 3_492_839.0,  # the recording's first counter value
        name: str = "NVIDIA H200",
        uuid: str = "GPU-h200-0000",
    ) -> None:
        super().__init__(
            name, power_mw=0.0, counter_mj=0.0, instant_mw=0.0,
            enforced_limit_mw=H200_LIMIT_MW, management_limit_mw=H200_LIMIT_MW,
            max_limit_mw=H200_LIMIT_MW, uuid=uuid,
        )
        self.signal = signal
        self.clock = clock
        self.has_counter = has_counter
        self.has_instant = has_instant
        self.counter_at_load_mj = counter_at_load_mj
        rng = random.Random(seed)
        start, end = signal.times_s[0] - 2.0, signal.end_s + 120.0
        self.counter_refresh_s = _refresh_grid(start, end, period_s, jitter_s, rng)
        self.power_refresh_s = _power_refreshes(start, end, field_period_s or period_s, rng)

    def energy_j(self, t_s: float) -> float:
        """The exact energy since the signal started, at ``t_s``."""
        return self.signal.energy_j(t_s)

    @staticmethod
    def _last(grid: list[float], t_s: float) -> float:
        i = bisect.bisect_right(grid, t_s) - 1
        if i < 0:
            raise AssertionError(f"t={t_s} is before the emulated GPU's first refresh")
        return grid[i]

    # The readings, as NVML returns them now (values of the last refresh).
    @property  # type: ignore[override]
    def counter_mj(self) -> float | None:
        if not self.has_counter:
            return None
        t_r = self._last(self.counter_refresh_s, self.clock())
        return float(math.floor(self.counter_at_load_mj + 1000.0 * self.energy_j(t_r)))

    @counter_mj.setter
    def counter_mj(self, value: float | None) -> None:
        pass  # set by FakeGpu.__init__ only

    @property  # type: ignore[override]
    def power_mw(self) -> float | None:
        t_r = self._last(self.power_refresh_s, self.clock())
        return float(round(1000.0 * self.signal.mean_w(t_r - 1.0, t_r)))

    @power_mw.setter
    def power_mw(self, value: float | None) -> None:
        pass

    @property  # type: ignore[override]
    def instant_mw(self) -> float | None:
        if not self.has_instant:
            return None
        t_r = self._last(self.power_refresh_s, self.clock())
        return float(round(1000.0 * self.signal.mean_w(t_r - 0.001, t_r)))

    @instant_mw.setter
    def instant_mw(self, value: float | None) -> None:
        pass


class FakeNvml:
    """The subset of pynvml that sweeper calls, with pynvml's error classes and names."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_FI_DEV_POWER_INSTANT = NVML_FI_DEV_POWER_INSTANT
    NVML_SUCCESS = NVML_SUCCESS

    def __init__(
        self,
        gpus: list[FakeGpu],
        init_error: Exception | None = None,
        driver: str | bytes = "550.54.15",
    ) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.init_calls = 0
        self.shutdown_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self.driver

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError("Not Found")

    def nvmlDeviceGetName(self, h: FakeGpu) -> str | bytes:
        return h.name

    def _check(self, h: FakeGpu) -> None:
        if h.fail:
            raise NVMLError("GPU is lost")

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> float:
        self._check(h)
        h.calls += 1
        value = h.counter_mj
        if value is None:
            raise NVMLError_NotSupported("Not Supported")
        return value

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> float:
        self._check(h)
        h.calls += 1
        value = h.power_mw
        if value is None:
            raise NVMLError_NotSupported("Not Supported")
        return value

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, field_ids: list[int]) -> list[Any]:
        self._check(h)
        h.calls += 1
        out = []
        for field_id in field_ids:
            value = h.instant_mw if field_id == NVML_FI_DEV_POWER_INSTANT else None
            ret = NVML_ERROR_NOT_SUPPORTED if value is None else NVML_SUCCESS
            out.append(SimpleNamespace(
                fieldId=field_id, nvmlReturn=ret,
                value=SimpleNamespace(uiVal=int(value or 0)),
            ))
        return out

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> float:
        if h.enforced_limit_mw is None:
            raise NVMLError_NotSupported("Not Supported")
        return h.enforced_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> float:
        return h.management_limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: FakeGpu) -> list[int]:
        if h.max_limit_mw is None:
            raise NVMLError_NotSupported("Not Supported")
        return [int(h.min_limit_mw), int(h.max_limit_mw)]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: FakeGpu) -> int:
        if h.max_limit_mw is None:
            raise NVMLError_NotSupported("Not Supported")
        return int(h.default_limit_mw)

    def nvmlDeviceSetPowerManagementLimit(self, h: FakeGpu, limit_mw: int) -> None:
        """As the driver: NotSupported without constraints, NoPermission unless root,
        InvalidArgument outside the range; else both the management and the enforced
        limit become ``limit_mw``."""
        self._check(h)
        if h.max_limit_mw is None:
            raise NVMLError_NotSupported("Not Supported")
        if not h.can_set_limit:
            raise NVMLError_NoPermission("Insufficient Permissions")
        if not h.min_limit_mw <= limit_mw <= h.max_limit_mw:
            raise NVMLError_InvalidArgument("Invalid Argument")
        h.management_limit_mw = h.enforced_limit_mw = int(limit_mw)
        h.limit_sets.append(int(limit_mw))

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> SimpleNamespace:
        self._check(h)
        if h.stats_fail:
            raise NVMLError("Unknown Error")
        return SimpleNamespace(gpu=h.util_pct, memory=40)

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[SimpleNamespace]:
        self._check(h)
        if h.processes is None:
            raise NVMLError_NotSupported("Not Supported")
        return [SimpleNamespace(pid=pid, usedGpuMemory=2**30) for pid in h.processes]

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:
        self._check(h)
        used = h.memory_used_b
        return SimpleNamespace(used=used, total=80 * 2**30, free=80 * 2**30 - used)


# ------------------------------------------------------------------ the recording itself

TRACES = Path(__file__).resolve().parent / "data"  # a copy of the shared gpu-traces
RECORDING = "h200-nvml-1khz"


@dataclass(frozen=True)
class Recording:
    """The H200 recording: every poll (unix s; counter mJ; power, instant mW) and the load
    process's marks (name -> unix s)."""

    t_s: list[float]
    counter_mj: list[float]
    power_mw: list[float]
    instant_mw: list[float]
    marks: dict[str, float]

    def refreshes(self) -> list[tuple[float, float]]:
        """(time of the poll that first saw it, counter J) of every counter refresh."""
        out = [(self.t_s[0], self.counter_mj[0] / 1000.0)]
        for i in range(1, len(self.t_s)):
            if self.counter_mj[i] != self.counter_mj[i - 1]:
                out.append((self.t_s[i], self.counter_mj[i] / 1000.0))
        return out

    def field_refreshes_s(self) -> list[float]:
        """Time of the poll that first saw each change of the instant-power field (a
        refresh that repeated its value shows no change)."""
        return [self.t_s[i] for i in range(1, len(self.t_s))
                if self.instant_mw[i] != self.instant_mw[i - 1]]

    def energy_above_idle_j(self, start_s: float, end_s: float) -> tuple[float, float]:
        """Energy of the window [start_s, end_s] with the decay after it (its own refreshes
        and those up to 0.2 s after, less the idle power measured in the 0.3 s before, over
        what lies outside the window), and that idle power (W): a reference with nothing
        assumed inside a refresh, and so with the work's decay included."""
        ref = self.refreshes()
        times = [t for t, _ in ref]
        a = bisect.bisect_right(times, start_s) - 1
        b = bisect.bisect_left(times, end_s + 0.2)
        idle_lo = bisect.bisect_left(times, times[a] - 0.3)
        idle_w = (ref[a][1] - ref[idle_lo][1]) / (times[a] - times[idle_lo])
        outside_s = (times[b] - times[a]) - (end_s - start_s)
        return ref[b][1] - ref[a][1] - idle_w * outside_s, idle_w


def load_recording(name: str = RECORDING, folder: Path = TRACES) -> Recording:
    import csv
    import gzip
    import json

    with gzip.open(folder / f"{name}.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    marks = dict(json.loads((folder / f"{name}.marks.json").read_text()))
    return Recording(
        [float(r["t"]) for r in rows], [float(r["counter_mj"]) for r in rows],
        [float(r["power_mw"]) for r in rows], [float(r["instant_mw"]) for r in rows], marks,
    )


class RecordedGpu(FakeGpu):
    """The real H200, replayed: every reading is the recording's last poll before now (so
    the real refresh times, jitter and levels, to within one ~5 ms poll)."""

    def __init__(
        self, recording: Recording, clock: Callable[[], float], *, has_counter: bool = True,
        has_instant: bool = True,
    ) -> None:
        super().__init__(
            "NVIDIA H200", power_mw=0.0, counter_mj=0.0, instant_mw=0.0,
            enforced_limit_mw=H200_LIMIT_MW, management_limit_mw=H200_LIMIT_MW,
            max_limit_mw=H200_LIMIT_MW, uuid="GPU-h200-recorded",
        )
        self.recording = recording
        self.clock = clock
        self.has_counter = has_counter  # False: as a GPU without the counter (pre-Volta)
        self.has_instant = has_instant

    def _poll(self) -> int:
        i = bisect.bisect_right(self.recording.t_s, self.clock()) - 1
        if i < 0:
            raise AssertionError("before the recording started")
        return i

    # Each reading is the recording's last poll before now; setting one does nothing.
    counter_mj = property(
        lambda self: self.recording.counter_mj[self._poll()] if self.has_counter else None,
        lambda self, value: None)
    power_mw = property(lambda self: self.recording.power_mw[self._poll()],
                        lambda self, value: None)
    instant_mw = property(
        lambda self: self.recording.instant_mw[self._poll()] if self.has_instant else None,
        lambda self, value: None)


def measure_recording(
    windows: Sequence[tuple[str, float, float]], recording: Recording | None = None,
    sample_hz: float = 10.0, **gpu: bool,
) -> list[tuple[str, float, float, float]]:
    """Phases at ``(name, start_s, end_s)`` of the replayed recording, measured by a real
    ``NvmlMeter`` and ``EnergySampler``: (name, boundary-read J, final J, uncertainty J).
    ``gpu``: ``has_counter`` / ``has_instant`` False replay a GPU without them."""
    from sweeper.energy.nvml import NvmlMeter

    recording = recording or load_recording()
    clock = Clock(recording.t_s[0] + 0.01)
    nvml = FakeNvml([RecordedGpu(recording, clock, **gpu)], driver="580.159.04")
    meter = NvmlMeter(nvml=nvml, clock=clock)
    results = _run_phases(meter, clock, windows, sample_hz, settle_s=1.0)
    return [(name, read_j, r.energy_j, r.energy_uncertainty_j)
            for (name, _, _), (r, read_j) in zip(windows, results, strict=True)]


def emulated_h200(
    clock: Callable[[], float] | None = None, seed: int = 0, t0_s: float = 100.0
) -> tuple[FakeNvml, EmulatedGpu, Session]:
    """A FakeNvml holding one emulated H200 replaying ``h200_session`` on ``clock``."""
    clock = clock or Clock(t0_s)
    session = h200_session(t0_s, seed)
    gpu = EmulatedGpu(session.signal, clock, seed=seed)
    return FakeNvml([gpu], driver="580.159.04"), gpu, session


def steady_gpu(
    power_w: float, period_s: float = H200_PERIOD_S, clock: Callable[[], float] | None = None,
    seed: int = 0,
) -> FakeNvml:
    """One emulated H200 drawing ``power_w`` for the next ten minutes on the real clock, for
    code that sleeps rather than taking an injected clock (idle baselines, raw readers)."""
    clock = clock or time.perf_counter
    now = clock()
    signal = PowerSignal([now - 1.0, now + 600.0], [power_w, power_w])
    gpu = EmulatedGpu(signal, clock, seed=seed, period_s=period_s,
                      jitter_s=min(H200_JITTER_S, period_s / 20))
    return FakeNvml([gpu], driver="580.159.04")


# ----------------------------------------------------------------------------- harness


@dataclass(frozen=True)
class PhaseScore:
    """One phase measured on the emulated GPU: the truth, the boundary-read difference (the
    method before refresh-aware attribution) and the sampler's final figure."""

    stretch: str
    length_s: float
    true_j: float
    read_j: float
    final_j: float
    uncertainty_j: float
    flag: str | None

    @property
    def read_error(self) -> float:
        return (self.read_j - self.true_j) / self.true_j

    @property
    def final_error(self) -> float:
        return (self.final_j - self.true_j) / self.true_j


def measure_phases(
    stretch: str, length_s: float, n: int, seed: int = 0, sample_hz: float = 10.0
) -> list[PhaseScore]:
    """``n`` windows of ``length_s`` at random offsets inside one stretch of the emulated
    H200 session (they cut through its load, as a profile window cuts through training),
    measured by a real ``NvmlMeter`` and ``EnergySampler`` on a simulated clock."""
    clock = Clock(100.0)
    nvml, gpu, session = emulated_h200(clock, seed=seed)
    lo, hi = session.stretches[stretch]
    if hi - lo < length_s:
        raise ValueError(f"stretch {stretch} ({hi - lo:.1f} s) is shorter than {length_s} s")
    rng = random.Random(seed * 7919 + int(length_s * 1000))
    windows: list[tuple[float, float]] = []
    t_free = lo - 1.0
    for start in sorted(rng.uniform(lo, hi - length_s) for _ in range(n)):
        start = max(start, t_free + rng.uniform(0.001, 0.05))
        if start + length_s > hi:
            break
        windows.append((start, start + length_s))
        t_free = start + length_s
    return _measure(nvml, gpu, clock, windows, [stretch] * len(windows), lo - 1.5, sample_hz)


def measure_work_phases(
    kind: str, length_s: float, n: int, seed: int = 0, sample_hz: float = 10.0
) -> list[PhaseScore]:
    """``n`` phases of ``length_s`` whose work is the ``kind`` load (``work_session``),
    measured by a real ``NvmlMeter`` and ``EnergySampler`` on a simulated clock."""
    return measure_session(work_session(kind, length_s, n, seed=seed), seed, sample_hz)


def measure_session(
    session: WorkSession, seed: int = 0, sample_hz: float = 10.0,
    on_meter: Callable[[Any, EmulatedGpu], None] | None = None,
) -> list[PhaseScore]:
    """Every phase of ``session`` measured by a real ``NvmlMeter`` and ``EnergySampler`` on
    a simulated clock; each score is labelled with the phase's load. ``on_meter`` is handed
    the meter and the emulated GPU before the first read."""
    clock = Clock(100.0)
    gpu = EmulatedGpu(session.signal, clock, seed=seed)
    nvml = FakeNvml([gpu], driver="580.159.04")
    return _measure(nvml, gpu, clock, session.phases, session.kinds,
                    session.lead_in_s - 1.5, sample_hz, on_meter)


def _measure(
    nvml: FakeNvml, gpu: EmulatedGpu, clock: Clock, windows: list[tuple[float, float]],
    labels: list[str], start_s: float, sample_hz: float,
    on_meter: Callable[[Any, EmulatedGpu], None] | None = None,
) -> list[PhaseScore]:
    from sweeper.energy.nvml import NvmlMeter

    clock.t = start_s  # the meter learns the refresh period before the first phase
    meter = NvmlMeter(nvml=nvml, clock=clock)
    if on_meter is not None:
        on_meter(meter, gpu)
    named = [(label, start, end) for (start, end), label in zip(windows, labels, strict=True)]
    results = _run_phases(meter, clock, named, sample_hz, settle_s=0.5)
    return [
        PhaseScore(label, end - start, gpu.energy_j(end) - gpu.energy_j(start), read_j,
                   r.energy_j, r.energy_uncertainty_j, r.flag)
        for (r, read_j), (label, start, end) in zip(results, named, strict=True)
    ]


@dataclass(frozen=True)
class BoundaryScore:
    """One phase boundary as the sampler settled it on the emulated GPU: the cumulative
    energy's error there (J, against the exact integral), the stated +- (95%), and what
    lies around it."""

    edge: str  # "begin" | "end"
    back_to_back: bool  # the phase on its other side is within 11 ms
    shares_refresh: bool  # another boundary falls in the same refresh interval
    error_j: float
    uncertainty_j: float


def measure_boundaries(session: WorkSession, seed: int = 0,
                       sample_hz: float = 10.0) -> list[BoundaryScore]:
    """Every phase boundary of ``session`` as a real ``NvmlMeter`` and ``EnergySampler``
    settled it (the last figure the sampler got for it, with the instant samples it had
    then), scored against the exact integral: where a phase's error comes from."""
    settled: dict[float, Any] = {}
    seen: list[tuple[Any, EmulatedGpu]] = []  # the run's timeline and GPU

    def record(meter: Any, emulated: EmulatedGpu) -> None:
        timeline = meter._gpus[0].timeline  # noqa: SLF001 - the one GPU's refresh timeline
        assert timeline is not None
        energy_at = timeline.energy_at

        def recorded(t_s: float, *, final: bool = False) -> Any:
            got = energy_at(t_s, final=final)
            if got is not None:
                settled[t_s] = got
            return got

        timeline.energy_at = recorded
        seen.append((timeline, emulated))

    measure_session(session, seed, sample_hz, on_meter=record)
    ((timeline, gpu),) = seen
    # the counter's zero: each refresh's value is the exact energy up to its true time
    offsets = []
    for change in list(timeline.changes)[5:15]:
        t_true = EmulatedGpu._last(gpu.counter_refresh_s, change.hi_s)  # noqa: SLF001
        offsets.append(gpu.energy_j(t_true) - change.value_j)
    offset_j = sorted(offsets)[len(offsets) // 2]
    marks = sorted(t for phase in session.phases for t in phase)
    out = []
    for k, (start, end) in enumerate(session.phases):
        for t_s, edge in ((start, "begin"), (end, "end")):
            if t_s not in settled:
                continue
            other = (session.phases[k + 1][0] - end if k + 1 < len(session.phases)
                     else math.inf) if edge == "end" else (
                start - session.phases[k - 1][1] if k > 0 else math.inf)
            i = bisect.bisect_right(timeline._times, t_s)  # noqa: SLF001
            t1, t2 = timeline.changes[i - 1].t_s, timeline.changes[i].t_s
            got = settled[t_s]
            out.append(BoundaryScore(
                edge, other < 0.011, sum(t1 < m < t2 for m in marks) > 1,
                got.energy_j - (gpu.energy_j(t_s) - offset_j), got.uncertainty_j))
    return out


def drive(sampler: Any, clock: Clock, until_s: float) -> None:
    """Advance a simulated clock to ``until_s``, ticking the sampler whenever it asks."""
    while (wake := sampler.tick()) < until_s:
        clock.t = max(wake, clock.t + 1e-6)
    clock.t = until_s


def _run_phases(
    meter: Any, clock: Clock, windows: Sequence[tuple[str, float, float]], sample_hz: float,
    settle_s: float,
) -> list[tuple[Any, float]]:
    """Each ``(name, start_s, end_s)`` as a phase of a real EnergySampler on ``meter`` and a
    simulated clock, then ``settle_s`` more so every phase is final; (result, the phase's
    figure from its boundary reads) per phase. Closes the meter."""
    from sweeper.energy.sampler import EnergySampler

    sampler = EnergySampler([meter], sample_hz=sample_hz, clock=clock, background=False)
    sampler.start()
    results = []
    for name, start, end in windows:
        drive(sampler, clock, start)
        sampler.begin_phase(name)
        drive(sampler, clock, end)
        result = sampler.end_phase()
        results.append((result, result.energy_j))
    drive(sampler, clock, clock.t + settle_s)
    sampler.stop()
    meter.close()
    return results


# ----------------------------------------------------------------------------- power limits

# A stated simple model of a power cap (the recording ran at the card's 700 W default, so
# this is not measured): a load that would draw ``draw_w`` runs at min(draw_w, limit) and,
# below its draw, takes (draw_w / limit_w) ** CAP_ALPHA times as long. With alpha < 1 the
# clocks fall less than the power (dynamic power goes as f V^2), so the energy of a fixed
# piece of work, limit x time, falls as the limit drops, while the time grows.
CAP_ALPHA = 0.5


def capped(draw_w: float, limit_w: float, alpha: float = CAP_ALPHA) -> tuple[float, float]:
    """(power W, time factor) of a load drawing ``draw_w`` under ``limit_w``."""
    if limit_w >= draw_w:
        return draw_w, 1.0
    return limit_w, (draw_w / limit_w) ** alpha


class CappedLoadGpu(FakeGpu):
    """An H200 on a clock that idles at ``idle_w`` and runs work (``run``) drawing
    ``draw_w`` under its current power limit (``capped``): its power reading clamps at the
    limit and the work takes longer. The counter integrates exactly (refresh quantisation
    is EmulatedGpu's part)."""

    def __init__(self, draw_w: float, clock: Clock, *, idle_w: float = CONTEXT_IDLE_W,
                 alpha: float = CAP_ALPHA, **gpu: Any) -> None:
        super().__init__("NVIDIA H200", power_mw=0.0, counter_mj=0.0,
                         enforced_limit_mw=H200_LIMIT_MW, management_limit_mw=H200_LIMIT_MW,
                         max_limit_mw=H200_LIMIT_MW, uuid="GPU-h200-capped", **gpu)
        self.draw_w, self.idle_w, self.alpha, self.clock = draw_w, idle_w, alpha, clock
        self._t_s, self._mj, self._now_w = clock(), 0.0, idle_w

    def _settle(self) -> None:
        now = self.clock()
        self._mj += 1000.0 * self._now_w * (now - self._t_s)
        self._t_s = now

    def run(self, work_s: float) -> float:
        """Run ``work_s`` seconds' worth of uncapped work; the seconds it took."""
        self._settle()
        power_w, factor = capped(self.draw_w, self.management_limit_mw / 1000.0, self.alpha)
        self._now_w = power_w
        self.clock.advance(work_s * factor)
        self._settle()
        self._now_w = self.idle_w
        return work_s * factor

    counter_mj = property(lambda self: (self._settle(), self._mj)[1], lambda self, v: None)
    power_mw = property(lambda self: 1000.0 * self._now_w, lambda self, v: None)


LIMIT_FIELDS = ("name", "uuid", "management_limit_mw", "enforced_limit_mw", "max_limit_mw",
                "min_limit_mw", "default_limit_mw", "can_set_limit", "limit_sets")


class FileBackedNvml(FakeNvml):
    """A FakeNvml whose GPUs' power-limit state lives in a JSON file, read before and
    written after every limit call, so processes share one card: a run, the signal that
    stops it, the run after a kill -9. tests/fake_pynvml makes it ``pynvml``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__([FakeGpu() for _ in self._load()], driver="580.159.04")
        self._sync_in()

    @staticmethod
    def write(path: Path, gpus: Sequence[FakeGpu]) -> None:
        import json
        import os

        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps([{k: getattr(g, k) for k in LIMIT_FIELDS} for g in gpus]))
        os.replace(tmp, path)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        import json

        return json.loads(Path(path).read_text())

    def _load(self) -> list[dict[str, Any]]:
        return self.read(self.path)

    def _sync_in(self) -> None:
        for gpu, fields in zip(self.gpus, self._load(), strict=True):
            gpu.__dict__.update(fields)

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> float:
        self._sync_in()
        return super().nvmlDeviceGetPowerManagementLimit(h)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> float:
        self._sync_in()
        return super().nvmlDeviceGetEnforcedPowerLimit(h)

    def nvmlDeviceSetPowerManagementLimit(self, h: FakeGpu, limit_mw: int) -> None:
        self._sync_in()
        super().nvmlDeviceSetPowerManagementLimit(h, limit_mw)
        self.write(self.path, self.gpus)
