"""A phase's energy between two boundary readings.

Each domain's boundary is settled by its meter when the meter can say (interpolated between
the counter refreshes on either side), else taken as read; the figure carries an uncertainty
in joules, and one whose mean power exceeds what its devices can draw is flagged rather than
passed on as a measurement.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sweeper.energy.refresh import BoundaryEnergy, SharedTerms
from sweeper.energy.types import Meter, PhaseEnergy

log = logging.getLogger(__name__)
ZERO_UNCERTAINTY = "its phases count 0 J uncertainty from it"  # a failed uncertainty call


@dataclass
class Boundary:
    """A boundary reading; each domain's energy is settled when its meter can say."""

    t_abs: float  # clock time of the read (the middle of it)
    read_j: dict[str, float]  # domain -> energy since the baseline, as read
    # domain -> (energy since the baseline, uncertainty or None = from the read, method)
    settled: dict[str, tuple[float, float | None, str]] = field(default_factory=dict)
    # domain -> the split's share of the uncertainty, per (refresh, piece) (BoundaryEnergy)
    shared: dict[str, SharedTerms] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return len(self.settled) == len(self.read_j)


class BoundaryFigures:
    """Settles boundaries and turns two of them into a phase's figures.

    It shares the sampler's maps, which the sampler fills as it reads and this only reads:
    which meter reads each domain, each domain's baseline energy, and the most power each
    domain can draw (watts, and why)."""

    def __init__(
        self,
        meters: Sequence[Meter],
        domain_meter: dict[str, int],
        baseline_j: dict[str, float],
        max_power: dict[str, tuple[float, str]],
    ) -> None:
        self._meters = meters
        self._domain_meter = domain_meter
        self._baseline_j = baseline_j
        self._max_power = max_power
        self._warned: set[tuple[str, str]] = set()

    def settle(self, b: Boundary, final: bool) -> bool:
        """Settle each domain of ``b`` its meter can settle now; True when all are."""
        for domain, read_j in b.read_j.items():
            if domain in b.settled:
                continue
            meter = self._meters[self._domain_meter[domain]]
            resolve = getattr(meter, "resolve", None)
            got: BoundaryEnergy | None = None
            never = resolve is None
            if resolve is not None:
                try:
                    got = resolve(domain, b.t_abs, final)
                except LookupError:  # never interpolable here: the read is all there is
                    never = True
                except Exception as exc:  # a fault in the meter's model: don't trust it, say so
                    self._warn_once(domain, "resolve", exc, "its boundaries are taken as read")
                    never = True
            if got is not None:
                energy_j = got.energy_j - self._baseline_j[domain]
                b.settled[domain] = (energy_j, got.uncertainty_j, got.method)
                b.shared[domain] = got.shared
            elif never or final:
                b.settled[domain] = (read_j, None, "read")
        return b.done

    def _read_uncertainty_j(self, domain: str, power_w: float, t_s: float) -> float:
        fn = getattr(self._meters[self._domain_meter[domain]], "boundary_uncertainty_j", None)
        try:
            return float(fn(domain, power_w, t_s=t_s)) if fn is not None else 0.0
        except Exception as exc:  # the phase is still measured; its uncertainty is not known
            self._warn_once(domain, "boundary_uncertainty_j", exc, ZERO_UNCERTAINTY)
            return 0.0

    def _relative_uncertainty(self, domain: str) -> float:
        fn = getattr(self._meters[self._domain_meter[domain]], "relative_uncertainty", None)
        try:
            return float(fn(domain)) if fn is not None else 0.0
        except Exception as exc:
            self._warn_once(domain, "relative_uncertainty", exc, ZERO_UNCERTAINTY)
            return 0.0

    def _warn_once(self, domain: str, what: str, exc: Exception, then: str) -> None:
        """A meter that cannot give its uncertainty, or settle a boundary, is said once
        (with what follows, ``then``), not hidden."""
        if (domain, what) not in self._warned:
            self._warned.add((domain, what))
            log.warning("%s of %s failed (%s: %s); %s", what, domain, type(exc).__name__, exc,
                        then)

    def figures(
        self, start: Boundary, end: Boundary, duration_s: float, settled: bool
    ) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
        """Energy, uncertainty and method per domain between two boundaries; from the reads
        alone unless ``settled``."""
        by_domain: dict[str, float] = {}
        unc: dict[str, float] = {}
        methods: dict[str, str] = {}
        for domain, end_read in end.read_j.items():
            e1, u1, m1 = (
                end.settled[domain] if settled and domain in end.settled
                else (end_read, None, "read")
            )
            start_read = start.read_j.get(domain, 0.0)
            e0, u0, m0 = (
                start.settled[domain] if settled and domain in start.settled
                else (start_read, None, "read")
            )
            energy_j = e1 - e0
            power_w = energy_j / duration_s if duration_s > 0 else 0.0
            if u0 is not None and u1 is not None:  # two interpolations
                ends_j = _combined(u0, u1, start.shared.get(domain, ()),
                                   end.shared.get(domain, ()))
            else:  # a read's bound adds
                ends_j = sum(u if u is not None
                             else self._read_uncertainty_j(domain, power_w, b.t_abs)
                             for u, b in ((u0, start), (u1, end)))
            unc[domain] = ends_j + self._relative_uncertainty(domain) * abs(energy_j)
            by_domain[domain] = energy_j
            methods[domain] = "interpolated" if m0 == m1 == "interpolated" else "read"
        return by_domain, unc, methods

    def fill(self, result: PhaseEnergy, start: Boundary, end: Boundary, final: bool) -> None:
        by_domain, unc, methods = self.figures(start, end, result.duration_s, settled=final)
        result.by_domain = by_domain
        result.energy_j = sum(by_domain.values())
        result.uncertainty_by_domain = unc
        result.energy_uncertainty_j = sum(unc.values())
        result.methods = methods
        result.flag = self.impossible(by_domain, unc, result.duration_s)
        result.final = final

    def impossible(
        self, by_domain: dict[str, float], unc: dict[str, float], duration_s: float
    ) -> str | None:
        """Why a phase's figure cannot be a measurement, or None when it can be."""
        energy_j, unc_j = sum(by_domain.values()), sum(unc.values())
        if energy_j + unc_j < 0:
            return f"negative energy ({energy_j:.3g} J +- {unc_j:.2g} J): a counter went back"
        bounded = [d for d in by_domain if d in self._max_power]
        if duration_s <= 0 or not bounded:
            return None
        cap_w = sum(self._max_power[d][0] for d in bounded)
        e_j = sum(by_domain[d] for d in bounded)
        u_j = sum(unc[d] for d in bounded)
        if (e_j - u_j) / duration_s <= cap_w:
            return None
        why = "; ".join(f"{d}: {self._max_power[d][1]}" for d in bounded)
        return (
            f"mean power {e_j / duration_s:.0f} W (+- {u_j / duration_s:.0f} W) of "
            f"{', '.join(bounded)} over {1000 * duration_s:.0f} ms exceeds the {cap_w:.0f} W "
            f"they can draw ({why}); not a measurement"
        )


def _combined(u0: float, u1: float, shared0: SharedTerms, shared1: SharedTerms) -> float:
    """The uncertainty of the energy between two interpolated boundaries: their errors are
    independent, except the shares of pieces of one refresh split and the times of the
    refreshes both rest on, which both boundaries hold (a phase inside one refresh: its
    ends' errors largely cancel), and the rest of each (a bound) adds."""
    terms: dict[tuple[float, int], float] = dict(shared1)
    for key, c in shared0:
        terms[key] = terms.get(key, 0.0) - c
    own0 = max(u0 - math.sqrt(sum(c * c for _, c in shared0)), 0.0)
    own1 = max(u1 - math.sqrt(sum(c * c for _, c in shared1)), 0.0)
    return math.sqrt(sum(c * c for c in terms.values())) + own0 + own1
