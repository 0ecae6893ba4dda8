"""Choosing meters: the best readable ones in "auto", or exactly the ones asked for.

The meters and the compositions are the ``energy/meter`` config group
(sweeper.energy.meter_group): ``CHOICES`` and ``SOURCES`` are its names, read when asked for.
"auto" (``auto.yaml``) tries NVML for GPUs when a driver is present (a GPU run whose NVML
cannot be read carries a warning that its GPU energy was not measured), RAPL for CPU packages
and DRAM when the counters are readable, and otherwise the labelled estimate as RAPL's stand-in
for CPU and memory. Every decision and every reason a meter was skipped (e.g. the RAPL
permission fix) lands in ``notes``.

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

import sweeper.energy.meter_group as meter_group
from sweeper.energy.labels import describe_meters, source_label
from sweeper.energy.types import Meter
from sweeper.errors import MeterUnavailable


def __getattr__(name: str) -> tuple[str, ...]:
    """CHOICES (compositions and meters) and SOURCES (meters), read from the group now, so a
    meter added on the config search path is named in every message."""
    compositions, meters = meter_group.names()
    if name == "CHOICES":
        return (*compositions, *meters)
    if name == "SOURCES":
        return meters
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """The meters a `meter=` value names: [a composition] such as ["auto"], or each meter of
    a '+' combination once."""
    compositions, meters = meter_group.names()
    parts = [p.strip().lower() for p in str(choice).split("+")]
    if len(parts) == 1 and parts[0] in compositions:
        return parts
    if any(p not in meters for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(
            f"unknown meter choice {choice!r}: use one of "
            f"{', '.join((*compositions, *meters))} "
            f"or a '+' combination of {', '.join(meters)} (e.g. 'nvml+rapl')"
        )
    return parts


def open_meters(
    choice: str = "auto",
    *,
    gpu_indices: Sequence[int] | None = None,
    powercap_root: Path | str | None = None,
    nvml: ModuleType | Any | None = None,
    cpu_tdp_w: float | None = None,
    **run: Any,
) -> MeterSet:
    """Open the meters for ``choice``; see the module docstring for the rules.

    ``gpu_indices=None`` means every visible GPU; an empty sequence means none (CPU runs), so
    "auto" does not even start NVML. Each meter gets the values its constructor names (a new
    meter's own ones through ``run``); None leaves its default.
    """
    parts = parse_choice(choice)
    run.update(gpu_indices=gpu_indices, powercap_root=powercap_root, nvml=nvml,
               cpu_tdp_w=cpu_tdp_w)
    cfg = meter_group.load(parts[0])
    if "tries" in cfg:
        no_gpus = gpu_indices is not None and len(gpu_indices) == 0
        return _try_in_order(cfg.tries, run, no_gpus)
    meters: list[Meter] = []
    try:
        for part in parts:
            meters.append(meter_group.open_meter(part, run))
    except MeterUnavailable as e:
        for m in meters:
            m.close()
        raise MeterUnavailable(f"meter {part!r} was requested but is unavailable: {e}") from e
    return MeterSet(meters, [f"{part}: requested" for part in parts])


def _try_in_order(tries: Sequence[Any], run: dict[str, Any], no_gpus: bool) -> MeterSet:
    """A composition: each entry's meter if it opens, else its stand-in, else nothing."""
    notes: list[str] = []
    warnings: list[str] = []
    meters: list[Meter] = []
    try:
        for entry in tries:
            name = str(entry.meter)
            if entry.get("gpu") and no_gpus:
                notes.append(f"{name}: not used (no GPU requested)")
                continue
            try:
                meter = meter_group.open_meter(name, run)
            except MeterUnavailable as e:
                notes.append(f"{name}: not used ({e})")
                if entry.get("unavailable_warning"):
                    warnings.append(str(entry.unavailable_warning).format(error=e))
                if not entry.get("stand_in"):
                    continue
                name = str(entry.stand_in)
                meter = meter_group.open_meter(name, run)
            meters.append(meter)
            notes.append(f"{name}: {getattr(meter, 'covers', 'opened')}")
    except BaseException:
        for m in meters:
            m.close()
        raise
    if not meters:
        raise MeterUnavailable("no meter could be opened: " + "; ".join(notes))
    return MeterSet(meters, notes, warnings)
