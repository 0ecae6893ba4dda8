"""A law's miss of each network it was fitted on, carried to that network's other sizes.

A law shared by every network misses one network by a factor that holds at each of its
batch sizes: bf16 convolutions on a CPU without bf16 units cost a resnet 17x its fp32
joules and an mlp 1.6x, and a network's efficiency on a machine is more than its sizes
say. Where a network was measured at a precision, its untried batch sizes at that
precision are predicted that much off too: the geometric mean of measured over law over
its runs. A network never measured gets the law alone. This is the one home of that
correction: the frontier sampler's estimates and `mode=estimate` both use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sweeper.predict.laws import Law, LawFactory
from sweeper.predict.types import Observation, Query, query_of

NetworkKey = tuple[float, int, str]  # MACs per sample, parameters, precision


def network_key(x: Observation | Query) -> NetworkKey:
    """A network (its MACs and parameters: names differ between stores) at one precision."""
    return (x.macs_per_sample, x.params, x.precision)


def network_misses(law: Law, observations: Sequence[Observation]) -> dict[NetworkKey, float]:
    """Per network and precision observed, the mean of ln(measured / law) over its runs."""
    logs: dict[NetworkKey, list[float]] = {}
    for o in observations:
        if o.per_sample > 0:
            logs.setdefault(network_key(o), []).append(
                math.log(o.per_sample) - law.predict_ln(query_of(o)))
    return {k: sum(v) / len(v) for k, v in logs.items()}


@dataclass(frozen=True)
class NetworkCorrected:
    """``base``, times its miss of the query's network where that network was fitted."""

    base: Law
    misses: Mapping[NetworkKey, float]

    @property
    def name(self) -> str:  # the law is still the base's: the report names it so
        return self.base.name

    def predict_ln(self, q: Query) -> float:
        return self.base.predict_ln(q) + self.misses.get(network_key(q), 0.0)

    def notes(self, q: Query) -> list[str]:
        notes = self.base.notes(q)
        miss = self.misses.get(network_key(q))
        if miss is not None:
            notes.append(f"this network was measured at {q.precision}: the {self.base.name} "
                         f"law's x{math.exp(miss):.3g} miss of it is applied")
        return notes

    def describe(self) -> str:
        return (f"{self.base.describe()}; times its miss of each network measured at that "
                "precision")


def corrected(factory: LawFactory) -> LawFactory:
    """The law ``factory`` fits, corrected by its misses of the networks it was fitted on."""

    def fit(observations: Sequence[Observation]) -> Law:
        base = factory(observations)
        return NetworkCorrected(base, network_misses(base, observations))

    return fit
