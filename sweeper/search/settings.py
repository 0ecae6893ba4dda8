"""The validated settings of a search (the `hydra.sweeper` node of `hydra/sweeper=pareto`).

Checked before any study is opened or any job launched, so a typo in a sampler name or
objective is reported in one line naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.config.storage import check_url
from sweeper.errors import ConfigError, invalid_value
from sweeper.search.config import ParetoSweeperConf
from sweeper.search.samplers import check_sampler, sampler_label

# Second objective (minimised) -> its unit, for tables and metric names.
OBJECTIVES: dict[str, str] = {
    "energy_train_j": "J",
    "energy_per_inference_sample_j": "J",
    "energy_total_j": "J",
    "co2_g": "g",
    # Net of idle power (sweeper's addition; the study's E_tr is gross); NULL without an
    # idle baseline, and for the estimate meter equal to the gross figure (it has no idle
    # by convention).
    "energy_train_net_j": "J",
    "energy_per_inference_sample_net_j": "J",
    "energy_total_net_j": "J",
}
ACCURACY = "val_accuracy"
FRONTIER_OBJECTIVES = ("energy_train_j", "energy_total_j")  # what its energy estimate bounds


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
    study_name: str | None
    print_front: bool


def _key(name: str) -> str:
    return f"hydra.sweeper.{name}"


def _fail(name: str, value: Any, allowed: str) -> ConfigError:
    return invalid_value(_key(name), value, allowed)


def _int(raw: Mapping[str, Any], name: str, minimum: int) -> int:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(name, value, f"an integer >= {minimum}")
    return value


def _positive(raw: Mapping[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise _fail(name, value, "null or a finite number of joules > 0")
    return float(value)


def _choice(raw: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = raw[name]
    if value not in allowed:
        raise _fail(name, value, ", ".join(allowed))
    return value


def settings_from(raw: Mapping[str, Any]) -> SearchSettings:
    """Validate the plugin's keyword arguments (plain containers, not DictConfig); a key
    left out takes ParetoSweeperConf's default."""
    raw = {**asdict(ParetoSweeperConf()), **raw}
    params = raw["params"] or {}
    if not isinstance(params, Mapping):
        raise _fail("params", params, "a mapping of config keys to sweeps such as choice(a,b)")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _fail("seed", seed, "null or an integer >= 0")
    target = raw["target_accuracy"]
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
        raise _fail("target_accuracy", target, "a fraction in (0, 1]")
    study_name = raw.get("study_name")
    if study_name is not None and (not isinstance(study_name, str) or not study_name.strip()):
        raise _fail("study_name", study_name, "null or a non-empty name")
    if raw.get("storage") is not None:  # opened through config.storage.study_url
        check_url(raw["storage"], _key("storage"))
    sampler_config = check_sampler(raw["sampler"])
    sampler = sampler_label(raw["sampler"])
    objective = _choice(raw, "objective", tuple(OBJECTIVES))
    if sampler == "frontier" and objective not in FRONTIER_OBJECTIVES:
        raise _fail("objective", objective, "with sampler frontier (the default), which predicts "
                    "training energy: " + ", ".join(FRONTIER_OBJECTIVES) + "; for this objective "
                    "set hydra/sweeper/sampler=nsga2")
    return SearchSettings(
        params={str(k): str(v) for k, v in params.items()},
        objective=objective,
        n_trials=_int(raw, "n_trials", 0),
        n_jobs=_int(raw, "n_jobs", 1),
        sampler=sampler,
        sampler_config=sampler_config,
        seed=seed,
        energy_budget_j=_positive(raw, "energy_budget_j"),
        max_trial_energy_j=_positive(raw, "max_trial_energy_j"),
        prune_dominated=bool(raw["prune_dominated"]),
        target_accuracy=float(target),
        study_name=study_name,
        print_front=bool(raw["print_front"]),
    )
