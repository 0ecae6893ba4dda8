"""How finely each meter resolves energy in time, and when a phase is too short for it.

A cumulative reading changes only when its meter refreshes: NVML's counter about every
100 ms (measured on an H200; other GPUs differ, and a meter that learns its own period
reports it as ``refresh_period_s``), RAPL's about every 1 ms, and the estimate meter's CPU
time in 10 ms scheduler ticks (USER_HZ = 100). A phase spanning only a few refreshes is
quantised (an H200 evaluation of 7-13 ms read 0 J or 12 J from boundary reads), or, with
NVML, rests on how sweeper split each refresh between phases (sweeper.energy.attribution).
Such a phase keeps its figure but is marked low-resolution, with the reason, instead of
passing for an exact one.
"""

from __future__ import annotations

from collections.abc import Iterable

from sweeper.energy.types import Meter

# Typical refresh period by source, used when a meter does not report its own.
DEFAULT_PERIOD_S = {"nvml": 0.1, "rapl": 0.001, "estimate": 0.01}
LOW_RESOLUTION_REFRESHES = 5  # a phase shorter than this many refreshes is low-resolution
# A measured stretch (inference benchmark, forecast window) should span this many refreshes.
MIN_SPAN_REFRESHES = 20


def meter_period_s(meter: Meter) -> float:
    """The meter's refresh period: its own ``refresh_period_s`` if known, else the typical."""
    own = getattr(meter, "refresh_period_s", None)
    if isinstance(own, int | float) and own > 0:
        return float(own)
    return DEFAULT_PERIOD_S.get(meter.source, 0.1)


def slowest_meter(meters: Iterable[Meter]) -> tuple[float, str]:
    """(period in seconds, source) of the coarsest meter in use."""
    periods = [(meter_period_s(m), m.source) for m in meters]
    return max(periods) if periods else (DEFAULT_PERIOD_S["estimate"], "estimate")


def min_span_s(meters: Iterable[Meter]) -> float:
    """Default length of a stretch that must be measured well: MIN_SPAN_REFRESHES refreshes
    of the slowest meter (2 s with NVML, 0.2 s with the estimate, 0.02 s with RAPL)."""
    return MIN_SPAN_REFRESHES * slowest_meter(meters)[0]


def low_resolution_reason(duration_s: float, period_s: float, source: str) -> str | None:
    """Why a phase of duration_s is too short for a meter refreshing every period_s."""
    if duration_s >= LOW_RESOLUTION_REFRESHES * period_s:
        return None
    why = ("its energy rests on how each refresh was split between phases (see its "
           "uncertainty), not exact" if source == "nvml" else "its energy is quantised, not exact")
    return (
        f"{duration_s * 1e3:.0f} ms is under {LOW_RESOLUTION_REFRESHES} refreshes of the "
        f"{source} meter ({period_s * 1e3:g} ms each): {why}"
    )
