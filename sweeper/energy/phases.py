"""What the sampler's phase API hands out and keeps: the handle a ``with sampler.phase()``
block gets, a checkpoint inside the work, the open phase, and a closed phase's figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sweeper.energy.boundary import Boundary
from sweeper.energy.labels import source_label
from sweeper.energy.types import PhaseEnergy
from sweeper.energy.utilisation import Utilisation


@dataclass
class PhaseHandle:
    """What ``EnergySampler.phase`` yields; ``result`` is filled in when the block exits."""

    kind: str
    index: int
    result: PhaseEnergy | None = None


@dataclass
class EnergyCheckpoint:
    """Energy since the sampler started, all domains, at one instant inside the work (a
    profile window's edge): the read value at first, settled between the refreshes around
    it once they are seen, as a phase boundary is (final at ``stop()`` at the latest). No
    phase begins or ends there, so its refresh is split as the phases around it say."""

    _energy_j: Callable[[Boundary], float]  # the sampler's, which settles under its lock
    boundary: Boundary

    @property
    def energy_j(self) -> float:
        return self._energy_j(self.boundary)


@dataclass
class OpenPhase:
    """A phase between ``begin_phase`` and ``end_phase``."""

    kind: str
    index: int
    t_s: float
    start: Boundary
    cpu_mark: tuple[float, float] | None = None  # (clock, process CPU seconds) at the start
    util: Utilisation = field(default_factory=Utilisation)

    def closed(self, t_s: float, sources: dict[str, str], cpu_pct: float | None) -> PhaseEnergy:
        """The phase's figures at its end reading ``t_s``; its energy is filled in later."""
        utilisation = self.util.result()
        if cpu_pct is not None:
            utilisation["process.cpu_util_pct"] = cpu_pct
        return PhaseEnergy(
            kind=self.kind,
            index=self.index,
            start_s=self.t_s,
            duration_s=t_s - self.t_s,
            energy_j=0.0,
            sources=sources,
            source=source_label(sources.values()),
            utilisation=utilisation,
        )
