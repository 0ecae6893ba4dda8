"""What a run's meter_source is and means in words: the combined label of the sources that
contributed, each meter's description, and which domains were measured, which estimated.

A combined source such as "nvml+estimate" is a GPU measured by NVML and a CPU estimated
from this process's CPU time; a label must say both, never let one stand for the whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from sweeper.energy.types import SOURCES, Meter

MEASURED = {
    "nvml": "GPU energy measured by NVML (the driver's energy counter)",
    "rapl": "CPU package and DRAM energy measured by RAPL",
}
ESTIMATED = (
    "CPU and memory energy estimated (this process's CPU time x the CPU's rated power, "
    "plus a memory term), not measured"
)


def describe_source(source: str | None) -> str:
    """One line saying what was measured and what was estimated for this meter_source."""
    parts = [p for p in (source or "").split("+") if p]
    if not parts or parts == ["none"]:
        return "nothing was measured"
    if parts == ["estimate"]:
        return "no NVML or RAPL readings here; " + ESTIMATED
    said = [MEASURED.get(p, f"{p} readings") for p in parts if p != "estimate"]
    if "estimate" in parts:
        said.append(ESTIMATED)
    return "; ".join(said)


def source_label(sources: Iterable[str]) -> str:
    """Combined label such as ``"nvml+rapl"`` or ``"nvml+estimate"``.

    Every source that contributed is named, in the fixed order of SOURCES, so an estimate can
    never hide behind a measured source. ``"none"`` when nothing was measured.
    """
    present = set(sources)
    ordered = [s for s in SOURCES if s in present] + sorted(present - set(SOURCES))
    return "+".join(ordered) if ordered else "none"


def describe_meters(meters: Iterable[Meter], problems: list[str] | None = None) -> dict[str, str]:
    """Every meter's describe(), keys prefixed by its source ("nvml.gpu:0.name").

    A second meter of the same source gets "rapl#2." so nothing is overwritten; a meter whose
    describe() raises is reported in ``problems`` (or re-raised when that is None).
    """
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for meter in meters:
        seen[meter.source] = seen.get(meter.source, 0) + 1
        n = seen[meter.source]
        prefix = meter.source if n == 1 else f"{meter.source}#{n}"
        try:
            desc = meter.describe()
        except Exception as e:
            if problems is None:
                raise
            problems.append(f"{prefix} describe() failed: {type(e).__name__}: {e}")
            continue
        out.update({f"{prefix}.{k}": v for k, v in desc.items()})
    return out
