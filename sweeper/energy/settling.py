"""Boundary readings and their settling: every meter is read at a phase's edges (under the
sampler's lock), and meters whose counters refresh slowly (NVML, ~100 ms) are told where
phases begin and end and settle each boundary between the refreshes on either side of it once
those are seen (each refresh split where the work was: sweeper.energy.attribution). A phase
is first measured from its boundary reads and made final in place a little after it ends (at
the latest at ``stop()``), in order.

Callers hold the sampler's lock for every method here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sweeper.energy.boundary import Boundary, BoundaryFigures
from sweeper.energy.reading import MeterReadings
from sweeper.energy.types import Meter, PhaseEnergy


@dataclass
class Pending:
    """A closed phase whose boundaries are not settled yet."""

    result: PhaseEnergy
    start: Boundary
    end: Boundary


class Settling:
    """The boundaries read so far and the phases still waiting for theirs to settle."""

    def __init__(
        self,
        meters: Sequence[Meter],
        readings: MeterReadings,
        watchers: Sequence[Meter],
        max_power: dict[str, tuple[float, str]],
    ) -> None:
        self._readings = readings
        self._watchers = watchers
        self.bounds = BoundaryFigures(
            meters, readings.domain_meter, readings.baseline_j, max_power
        )
        self.pending: list[Pending] = []
        self.checkpoints: list[Boundary] = []  # profile-window edges, settled by stop()

    def boundary(self, context: str, edge: str | None = None) -> tuple[float, Boundary]:
        """Read every meter at a boundary; ``edge`` ("begin" or "end" of a phase) is told to
        meters that attribute energy within a refresh by where the work is."""
        t_s, values, _ = self._readings.read(context)
        boundary = Boundary(self._readings.t0 + t_s, {d: r.energy_j for d, r in values.items()})
        if edge is not None:
            for meter in self._watchers:
                mark = getattr(meter, "mark_boundary", None)
                if mark is not None:
                    mark(boundary.t_abs, edge)
        self.bounds.settle(boundary, final=False)
        return t_s, boundary

    def close(self, result: PhaseEnergy, start: Boundary, end: Boundary) -> None:
        """Measure a phase from its boundary reads for now; it is finished when they settle."""
        self.bounds.fill(result, start, end, final=False)  # from the reads, for now
        self.pending.append(Pending(result, start, end))
        self.settle(final=False)

    def settle(self, final: bool) -> None:
        """Finish every pending phase whose boundaries are settled (all of them at final)."""
        while self.pending:
            p = self.pending[0]
            if not (self.bounds.settle(p.start, final) & self.bounds.settle(p.end, final)):
                return  # phases finish in order
            self.pending.pop(0)
            self.bounds.fill(p.result, p.start, p.end, final=True)

    def checkpoint_energy_j(self, b: Boundary, running: bool) -> float:
        """A checkpoint's energy: settled where its meters can say (tried again while the
        sampler runs), else as read."""
        if running:
            self.bounds.settle(b, final=False)
        return sum(b.settled[d][0] if d in b.settled else read_j
                   for d, read_j in b.read_j.items())

    def finish(
        self, start: Boundary, end: Boundary, t_s: float
    ) -> tuple[dict[str, float], dict[str, float]]:
        """At stop: every phase, checkpoint and the run's own boundaries final; the run's
        energy and uncertainty per domain."""
        self.settle(final=True)
        for checkpoint in self.checkpoints:
            self.bounds.settle(checkpoint, final=True)
        self.bounds.settle(start, final=True)
        self.bounds.settle(end, final=True)
        by_domain, unc, _ = self.bounds.figures(start, end, t_s, settled=True)
        return by_domain, unc
