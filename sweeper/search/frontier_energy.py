"""The frontier sampler's prediction of a configuration's training energy (J) before it runs:
measured energy of the same size, else the estimator's fit (its log-linear law, or its
layer-wise law where that predicts held-out models better), else a MACs proxy.

A GPU power limit (``gpu.power_limit``) changes the joules of the same work: each limit's
factor is learned from sizes measured both at it and at the reference limit (the one
measured on most sizes), and every estimate is made at the reference, then scaled."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sweeper.predict.heldout import CHALLENGER_MARGIN, leave_one_model_out
from sweeper.predict.laws import Law, fit_loglinear, layer_time_candidates
from sweeper.predict.layerwise import layerwise_candidates
from sweeper.predict.per_network import network_key, network_misses
from sweeper.predict.types import Observation, Query

MIN_CONFIGS_FOR_FIT = 4
DEFAULT_LIMIT = "1"  # the card as it is, or gpu.power_limit=1.0 (its default limit)


def limit_label(fraction: float | None, watts: float | None, auto: bool = False) -> str:
    """A gpu.power_limit request as SizedParams names it."""
    if auto:
        return "auto"
    if watts is not None:
        return f"{watts:g} W"
    return DEFAULT_LIMIT if fraction is None else f"{fraction:g}"
MIN_MODELS_FOR_FIT = 3


def params_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A configuration as a hashable key (values compared by repr)."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


@dataclass(frozen=True)
class SizedParams:
    """What the energy estimate needs about one configuration (sweeper.predict.types.Query
    plus how many training samples the run processes over all its epochs)."""

    macs_per_sample: float
    params: int
    batch: int
    precision: str
    train_samples: int
    power_limit: str = DEFAULT_LIMIT  # the gpu.power_limit request, as a label
    layers: tuple[float, ...] | None = None  # the network's layer totals (Query.layers)
    layer_s: float | None = None  # predicted training seconds per sample (Query.layer_s)

    @property
    def query(self) -> Query:
        return Query(self.macs_per_sample, self.params, self.batch, self.precision,
                     layers=self.layers, layer_s=self.layer_s)

    @property
    def work(self) -> SizedParams:
        """The same work at the reference limit (the limit is not part of the size)."""
        return replace(self, power_limit=DEFAULT_LIMIT)


Describe = Callable[[Mapping[str, Any]], SizedParams]


class FrontierEnergy:
    """Predicted training energy (J) of a configuration, from what has been measured.

    In order of trust: the measured energy of configurations with the same size (they
    differ only in, say, the learning rate, which does not change the work done); the
    estimator's log-linear fit once MIN_CONFIGS_FOR_FIT sizes of MIN_MODELS_FOR_FIT models
    are measured (prior observations, such as earlier runs on this machine, count), or its
    layer-time law (this machine's mode=layers catalog) or layer-wise law where every size
    has them, enough models are measured and one predicts each model held out clearly
    better (sweeper.predict.heldout's margin), corrected by how far it missed the same
    network at the same precision among this study's measurements; the
    MACs x samples proxy scaled by the measurements so far (relative until something is
    measured; proportional to MACs, it overrates larger models, which only delays them).
    """

    def __init__(self, describe: Describe, prior: Sequence[Observation] = ()) -> None:
        self.describe = describe
        self.prior = list(prior)
        self._sizes: dict[tuple[Any, ...], SizedParams] = {}
        self._measured: dict[SizedParams, list[float]] = {}
        self._fit: Any = None
        self._missed: dict[tuple[float, int, str], float] = {}  # _law_misses
        self._limit_factor: dict[str, float] = {}

    def size(self, params: Mapping[str, Any]) -> SizedParams:
        key = params_key(params)
        if key not in self._sizes:
            self._sizes[key] = self.describe(params)
        return self._sizes[key]

    def observe(self, measured: Sequence[tuple[Mapping[str, Any], float]]) -> None:
        """Measured (or forecast) training energies of the study's trials so far."""
        self._measured = {}
        for params, energy_j in measured:
            if energy_j > 0 and math.isfinite(energy_j):
                self._measured.setdefault(self.size(params), []).append(energy_j)
        self._learn_limits()
        reference = self._at_reference()
        # One model per size (MACs, parameters), whatever its name: a prior run and a trial
        # of one network are held out together.
        trials = [Observation(run_id=-1, hardware_id="", meter_source="",
                              model=_model_name(s.macs_per_sample, s.params), dataset="",
                              batch=s.batch, precision=s.precision, params=s.params,
                              macs_per_sample=s.macs_per_sample,
                              per_sample=float(np.mean(e)) / s.train_samples, layers=s.layers,
                              layer_s=s.layer_s)
                  for s, e in reference.items()]
        observations = [*(replace(o, model=_model_name(o.macs_per_sample, o.params))
                          for o in self.prior), *trials]
        sizes = {(o.macs_per_sample, o.params, o.batch, o.precision) for o in observations}
        models = {(o.macs_per_sample, o.params) for o in observations}
        # Fewer than three model sizes leave MACs and parameters unresolved (one: no MACs
        # term at all; two: collinear): such a fit cannot tell another model's cost.
        enough = len(sizes) >= MIN_CONFIGS_FOR_FIT and len(models) >= MIN_MODELS_FOR_FIT
        self._fit = _best_fit(observations) if enough else None
        # Per network and precision measured in this study, how far the law missed it
        # (sweeper.predict.per_network): an untried size of it is predicted that much off
        # too. Once per observe, not per candidate the sampler prices.
        self._missed = {} if self._fit is None else {
            k: math.exp(v) for k, v in network_misses(self._fit, trials).items()}

    @property
    def law(self) -> str:
        """The law the estimates of untried sizes use now ("" before there is a fit)."""
        return "" if self._fit is None else str(self._fit.name)

    def _learn_limits(self) -> None:
        """Each limit's energy relative to the reference limit: the geometric mean over
        the sizes measured at both (1 for a limit never measured beside it)."""
        by_work: dict[SizedParams, dict[str, float]] = {}
        for s, e in self._measured.items():
            by_work.setdefault(s.work, {})[s.power_limit] = float(np.mean(e))
        counts: dict[str, int] = {}
        for limits in by_work.values():
            for label in limits:
                counts[label] = counts.get(label, 0) + 1
        ref = max(counts, key=lambda k: (counts[k], k == DEFAULT_LIMIT)) if counts else None
        self._limit_factor = {}
        for label in counts:
            ratios = [lim[label] / lim[ref] for lim in by_work.values()
                      if ref in lim and label in lim]
            self._limit_factor[label] = float(np.exp(np.mean(np.log(ratios)))) if ratios else 1.0

    def _factor(self, s: SizedParams) -> float:
        return self._limit_factor.get(s.power_limit, 1.0)

    def _at_reference(self) -> dict[SizedParams, list[float]]:
        """Measured energies brought to the reference limit, per size of work."""
        out: dict[SizedParams, list[float]] = {}
        for s, e in self._measured.items():
            out.setdefault(s.work, []).extend(x / self._factor(s) for x in e)
        return out

    def predict_j(self, params: Mapping[str, Any]) -> float:
        s = self.size(params)
        if s in self._measured:
            return float(np.mean(self._measured[s]))
        return self._predict_reference_j(s.work) * self._factor(s)

    def _predict_reference_j(self, s: SizedParams) -> float:
        reference = self._at_reference()
        if s in reference:  # the same work measured at another limit
            return float(np.mean(reference[s]))
        if self._fit is not None:
            return self._law_j(s) * self._missed.get(network_key(s.query), 1.0)
        proxy = s.macs_per_sample * s.train_samples * 1e-9
        if reference:
            ratios = [float(np.mean(e)) / (m.macs_per_sample * m.train_samples * 1e-9)
                      for m, e in reference.items()]
            return proxy * float(np.median(ratios))
        return proxy

    def _law_j(self, s: SizedParams) -> float:
        return math.exp(self._fit.predict_ln(s.query)) * s.train_samples


def _model_name(macs_per_sample: float, params: int) -> str:
    return f"{macs_per_sample:g}/{params}"


def _best_fit(observations: Sequence[Observation]) -> Law:
    """The log-linear fit on MACs, parameters and batch, unless a richer law (the layer-time
    law where this machine has a layer catalog, the layer-wise law) predicts every model
    held out (leave-one-model-out) clearly better: then the best of those."""
    loglinear = fit_loglinear(observations)
    challengers = {**layerwise_candidates(observations), **layer_time_candidates(observations)}
    if not challengers:
        return loglinear
    before = leave_one_model_out(observations, lambda obs: fit_loglinear(obs))
    if before is None:
        return loglinear
    best, best_mape = None, before.mape * (1.0 - CHALLENGER_MARGIN)
    for factory in challengers.values():
        score = leave_one_model_out(observations, factory)
        if score is not None and score.mape < best_mape:
            best, best_mape = factory, score.mape
    return loglinear if best is None else best(observations)
