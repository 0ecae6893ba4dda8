"""Plain value types that cross the energy package's boundary (no torch, no storage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

SOURCES = ("nvml", "rapl", "estimate")


@dataclass(frozen=True)
class DomainReading:
    """Cumulative energy of one domain since its meter was opened."""

    domain: str  # "gpu:0", "package-0", "dram-0", "cpu", "memory"
    source: str  # one of SOURCES
    energy_j: float
    power_w: float | None = None


class Meter(Protocol):
    """A source of cumulative per-domain energy readings.

    Readings are cumulative so a phase's energy is the difference of two exact
    readings, independent of how often the background sampler polls.

    Optional methods the sampler looks for (so not part of the protocol):
    ``boundary_uncertainty_j(domain, power_w, t_s=None)`` (the uncertainty of a boundary
    read at ``t_s``),
    ``relative_uncertainty(domain)`` (share of a phase's energy the method may miss),
    ``max_power_w()`` (domain -> (watts, why): the most the device can draw), and, for
    counters that refresh slowly, ``watch()``, ``next_read_s(now)``, ``settle_s()`` and
    ``resolve(domain, t, final)`` (see ``NvmlMeter``). Such meters share the sampler's clock.

    A meter may also have ``stats() -> dict[str, float]`` (utilisation now, e.g.
    ``"gpu:0.util_pct"``, ``"gpu:0.memory_used_mib"``). It is optional, so it is not part of
    the protocol: the sampler looks for it and averages ``*_pct`` keys over a phase and takes
    the maximum of the others.
    """

    source: str

    def read(self) -> list[DomainReading]: ...

    def describe(self) -> dict[str, str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Sample:
    """One background reading of one domain."""

    t_s: float  # seconds since the sampler started
    domain: str
    source: str
    power_w: float | None
    energy_j: float  # cumulative since the sampler started


@dataclass
class PhaseEnergy:
    """Energy of one phase, from readings at its boundaries.

    Where a meter refreshes slowly (NVML, ~100 ms) the sampler first fills this from the
    boundary reads (``final`` False) and then, once the refresh after each boundary has been
    seen, replaces the figures in place with the interpolated ones (``final`` True); every
    phase is final after ``EnergySampler.stop()``. ``energy_uncertainty_j`` covers both
    boundaries; ``flag`` says why the figure is not a measurement (mean power above what
    the devices can draw), None when it is one.
    """

    kind: str
    index: int
    start_s: float
    duration_s: float
    energy_j: float
    by_domain: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # domain -> source
    source: str = "estimate"  # best source among the domains ("mixed" never hides an estimate)
    # Mean of "*_pct" keys, max of the rest ("gpu:0.memory_used_mib"), over the phase's polls;
    # plus "process.cpu_util_pct", this process's share of all logical cores over the phase.
    utilisation: dict[str, float] = field(default_factory=dict)
    energy_uncertainty_j: float = 0.0
    uncertainty_by_domain: dict[str, float] = field(default_factory=dict)
    # domain -> "interpolated" (between refreshes on both sides) or "read" (boundary reads)
    methods: dict[str, str] = field(default_factory=dict)
    flag: str | None = None
    final: bool = True

    @property
    def mean_power_w(self) -> float | None:
        return self.energy_j / self.duration_s if self.duration_s > 0 else None


@dataclass
class EnergySummary:
    """Whole-run figures returned when the sampler stops."""

    energy_j: float
    duration_s: float
    by_domain: dict[str, float]
    source: str
    mean_power_w: float | None
    peak_power_w: float | None
    warnings: list[str] = field(default_factory=list)
    hardware: dict[str, str] = field(default_factory=dict)
    energy_uncertainty_j: float = 0.0
    uncertainty_by_domain: dict[str, float] = field(default_factory=dict)


class MeterReadError(RuntimeError):
    """An opened meter failed to read; the sampler records it as a warning and keeps going."""
