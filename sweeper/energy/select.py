"""Choosing meters: the best readable ones in "auto", or exactly the ones asked for.

"auto" uses NVML for GPUs when a driver is present (a GPU run whose NVML cannot be read
carries a warning that its GPU energy was not measured), RAPL for CPU packages and DRAM when the
counters are readable, and otherwise the labelled estimate for CPU and memory. Every decision
and every reason a meter was skipped (e.g. the RAPL permission fix) lands in ``notes``.

An explicit choice ("nvml", "rapl", "estimate", or a "+" combination such as "nvml+rapl")
opens exactly those meters and raises MeterUnavailable if one cannot be opened, so a run can
fail before training instead of silently measuring something else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sweeper.energy.estimate import EstimateMeter
from sweeper.energy.labels import describe_meters, source_label
from sweeper.energy.nvml import NvmlMeter
from sweeper.energy.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter
from sweeper.energy.types import SOURCES, Meter
from sweeper.errors import MeterUnavailable

CHOICES = ("auto", *SOURCES)


@dataclass
class MeterSet:
    """The opened meters plus why they were chosen; iterate it to get the meters."""

    meters: list[Meter]
    notes: list[str] = field(default_factory=list)
    # What a run's reader must know about what was not measured (stored with the run).
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Meter]:
        return iter(self.meters)

    def __len__(self) -> int:
        return len(self.meters)

    @property
    def source(self) -> str:
        """Combined label such as "nvml+rapl"; an estimate always shows."""
        return source_label(m.source for m in self.meters)

    def describe(self) -> dict[str, str]:
        out = describe_meters(self.meters)
        out["meter_selection"] = "; ".join(self.notes)
        return out

    def close(self) -> None:
        for m in self.meters:
            m.close()

    def __enter__(self) -> MeterSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_choice(choice: str) -> list[str]:
    """The meters a `meter=` value names: ["auto"], or each of a '+' combination once."""
    parts = [p.strip().lower() for p in str(choice).split("+")]
    if parts == ["auto"]:
        return parts
    if not parts or any(p not in SOURCES for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(
            f"unknown meter choice {choice!r}: use one of {', '.join(CHOICES)} "
            f"or a '+' combination of {', '.join(SOURCES)} (e.g. 'nvml+rapl')"
        )
    return parts


def open_meters(
    choice: str = "auto",
    *,
    gpu_indices: Sequence[int] | None = None,
    powercap_root: Path | str = DEFAULT_POWERCAP_ROOT,
    nvml: ModuleType | Any | None = None,
    cpu_tdp_w: float | None = None,
) -> MeterSet:
    """Open the meters for ``choice``; see the module docstring for the rules.

    ``gpu_indices=None`` means every visible GPU; an empty sequence means none (CPU runs), so
    "auto" does not even start NVML.
    """
    parts = parse_choice(choice)
    notes: list[str] = []
    warnings: list[str] = []
    meters: list[Meter] = []
    if parts != ["auto"]:
        try:
            for part in parts:
                if part == "nvml":
                    meters.append(NvmlMeter(gpu_indices, nvml=nvml))
                elif part == "rapl":
                    meters.append(RaplMeter(powercap_root))
                else:
                    meters.append(EstimateMeter(cpu_tdp_w))
                notes.append(f"{part}: requested")
        except MeterUnavailable as e:
            for m in meters:
                m.close()
            raise MeterUnavailable(f"meter {part!r} was requested but is unavailable: {e}") from e
        return MeterSet(meters, notes)

    if gpu_indices is not None and len(gpu_indices) == 0:
        notes.append("nvml: not used (no GPU requested)")
    else:
        try:
            gpu = NvmlMeter(gpu_indices, nvml=nvml)
            meters.append(gpu)
            notes.append(f"nvml: GPUs {gpu.gpu_indices}")
        except MeterUnavailable as e:
            notes.append(f"nvml: not used ({e})")
            warnings.append(f"GPU energy not measured: NVML unavailable ({e}); the energy "
                            "figures cover the CPU and memory only")
    try:
        rapl = RaplMeter(powercap_root)
        meters.append(rapl)
        notes.append(f"rapl: {', '.join(rapl.domains)}")
    except MeterUnavailable as e:
        notes.append(f"rapl: not used ({e})")
        est = EstimateMeter(cpu_tdp_w)
        meters.append(est)
        notes.append(f"estimate: cpu+memory, TDP {est.tdp.tdp_w:g} W from {est.tdp.source}")
    return MeterSet(meters, notes, warnings)
