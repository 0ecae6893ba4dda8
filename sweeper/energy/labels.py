"""What a run's meter_source means in words: which domains were measured, which estimated.

A combined source such as "nvml+estimate" is a GPU measured by NVML and a CPU estimated
from its utilisation; a label must say both, never let one stand for the whole.
"""

from __future__ import annotations

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
