"""The frontier sampler inside `hydra/sweeper=pareto`: each candidate configuration is
composed as its job would be (Hydra's sweep config for its overrides), its model is built
for MACs and parameters (no training, as `mode=estimate` does), and the store's completed
runs on this machine seed the energy fit."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from sweeper.predict.observations import load_observations
from sweeper.predict.types import Observation
from sweeper.search.frontier import FrontierSampler
from sweeper.search.frontier_energy import FrontierEnergy, SizedParams, limit_label
from sweeper.search.samplers import SearchContext
from sweeper.search.space import SearchSpace
from sweeper.store import Store

log = logging.getLogger("sweeper.search")

# Run keys that never change what a run computes per sample, how many samples it sees,
# its batch or its precision: candidates differing only in these share one description.
SIZE_NEUTRAL = frozenset({"lr", "momentum", "weight_decay", "optimizer", "seed", "repeat"})


def sweep_describer(sweeper: Any, space: SearchSpace, store: Store | None = None) -> Any:
    """params -> SizedParams, composing each candidate's job config like a launcher does;
    with the store, each also gets its predicted layer time from this machine's catalog
    (mode=layers), for the layer-time law."""
    from sweeper.config.spec import build_spec
    from sweeper.run.sizing import SizedConfig, layer_timer, size_config

    config: DictConfig = sweeper.config
    loader = sweeper.hydra_context.config_loader
    base_dir = str(config.hydra.runtime.cwd)
    sized: dict[tuple[Any, ...], SizedConfig] = {}
    described: dict[tuple[Any, ...], SizedParams] = {}
    hardware: list[str] = []

    def describe(params: Mapping[str, Any]) -> SizedParams:
        relevant = tuple(sorted((k, repr(v)) for k, v in params.items()
                                if space.keys[k].lstrip("+~") not in SIZE_NEUTRAL))
        if relevant not in described:
            described[relevant] = _describe(params)
        return described[relevant]

    def _describe(params: Mapping[str, Any]) -> SizedParams:
        cfg = loader.load_sweep_config(config, space.overrides(params))
        spec = build_spec(cfg)
        key = (spec.model, repr(spec.model_options), spec.dataset, repr(spec.dataset_options))
        if key not in sized:
            sized[key] = size_config(spec, base_dir)
            hardware.append(sized[key].hardware_id)
        s = sized[key]
        layer_s = None if store is None else layer_timer(store).predict(
            s.hardware_id, spec.precision, "train", s.layer_works, spec.batch)
        request = spec.power_limit
        limit = limit_label(request.fraction, request.watts, request.auto)
        return SizedParams(s.macs_per_sample, s.params, spec.batch, spec.precision,
                           s.train_samples * spec.epochs, limit, s.layer_features, layer_s)

    describe.hardware = hardware  # type: ignore[attr-defined]
    return describe


def prior_observations(store: Store, hardware_id: str | None) -> list[Observation]:
    """Completed runs on this machine, from its most common meter (never mixed), with their
    networks' layers (for the layer-wise law) and predicted layer times (for the layer-time
    law, where this machine has a catalog)."""
    from sweeper.run.sizing import layer_timer, run_layers

    if hardware_id is None:
        return []
    rows = [o for o in load_observations(store, layers=run_layers,
                                         layer_time=layer_timer(store))
            if o.hardware_id == hardware_id]
    if not rows:
        return []
    meter, _ = Counter(o.meter_source for o in rows).most_common(1)[0]
    return [o for o in rows if o.meter_source == meter]


def frontier_sampler(
    context: SearchContext, seed: int | None, *, optimism: float = 2.0, min_gain: float = 0.002,
    grid_points: int = 4,
) -> FrontierSampler:
    """conf/hydra/sweeper/sampler/frontier.yaml's target."""
    space, store = context.space, context.store
    describe = sweep_describer(context.sweeper, space, store)
    energy = FrontierEnergy(describe)
    sampler = FrontierSampler(space.distributions, energy, seed=seed, optimism=optimism,
                              min_gain=min_gain, grid_points=grid_points)
    if sampler.points:  # size one candidate now: it names this machine for the prior
        describe(sampler.points[0])
        energy.prior = prior_observations(store, describe.hardware[0])
        log.info("frontier sampler: %d candidate configuration(s), %d earlier run(s) on this "
                 "machine seed the energy fit", len(sampler.points), len(energy.prior))
    return sampler
