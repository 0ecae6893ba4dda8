"""The validated settings of a search (the `hydra.sweeper` node of `hydra/sweeper=pareto`).

Checked before any study is opened or any job launched, so a typo in a sampler name or
objective is reported in one line naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.config.schema import validate
from sweeper.errors import invalid_value
from sweeper.search.config import OBJECTIVES, ParetoSweeperConf
from sweeper.search.samplers import check_sampler, sampler_label

__all__ = ["ACCURACY", "INFERENCE_FREE", "OBJECTIVES", "SearchSettings", "settings_from"]

ACCURACY = "val_accuracy"
FRONTIER_OBJECTIVES = ("energy_train_j", "energy_total_j")  # what its energy estimate bounds
# Objectives that need no E_in: with them a dominated trial may skip its inference benchmark.
INFERENCE_FREE = ("energy_train_j",)


@dataclass(frozen=True)
class SearchSettings:
    """The validated settings; their defaults are ParetoSweeperConf's (sweeper.search.config)."""

    params: dict[str, str]
    objective: str
    n_trials: int
    n_jobs: int
    sampler: str  # its name (the file's under conf/hydra/sweeper/sampler/, or the class's)
    sampler_config: dict[str, Any]  # `_target_` and arguments, checked against the target
    seed: int | None
    energy_budget_j: float | None
    max_trial_energy_j: float | None
    prune_dominated: bool
    target_accuracy: float
    inference: str
    study_name: str | None
    print_front: bool

    @property
    def skips_dominated_inference(self) -> bool:
        """Whether trials get the front so far (sweeper.inference_front)."""
        return self.inference == "front" and self.objective in INFERENCE_FREE


def settings_from(raw: Mapping[str, Any]) -> SearchSettings:
    """Validate the plugin's keyword arguments (plain containers, not DictConfig); a key
    left out takes ParetoSweeperConf's default."""
    raw = {**asdict(ParetoSweeperConf()), **raw}
    params = raw["params"] or {}
    if not isinstance(params, Mapping):
        raise invalid_value("hydra.sweeper.params", params,
                            "a mapping of config keys to sweeps such as choice(a,b)")
    checked = ParetoSweeperConf(**validate(ParetoSweeperConf, raw, "hydra.sweeper."))
    sampler_config = check_sampler(raw["sampler"])
    sampler = sampler_label(raw["sampler"])
    if sampler == "frontier" and checked.objective not in FRONTIER_OBJECTIVES:
        raise invalid_value(
            "hydra.sweeper.objective", checked.objective, "with sampler frontier (the "
            "default), which predicts training energy: " + ", ".join(FRONTIER_OBJECTIVES)
            + "; for this objective set hydra/sweeper/sampler=nsga2")
    return SearchSettings(
        params={str(k): str(v) for k, v in params.items()},
        objective=checked.objective,
        n_trials=checked.n_trials,
        n_jobs=checked.n_jobs,
        sampler=sampler,
        sampler_config=sampler_config,
        seed=checked.seed,
        energy_budget_j=checked.energy_budget_j,
        max_trial_energy_j=checked.max_trial_energy_j,
        prune_dominated=checked.prune_dominated,
        target_accuracy=checked.target_accuracy,
        inference=checked.inference,
        study_name=checked.study_name,
        print_front=checked.print_front,
    )
