"""The settings of `hydra/sweeper=pareto`, with their defaults, meaning and allowed values:
the one place they are written (the same `key(...)` fields as the app's schema,
sweeper.config.schema, checked by the same validator in sweeper.search.settings).

Hydra's plugin scan imports this on every start (through hydra_plugins.sweeper_pareto), so
it stays light: no Optuna or torch imports. The default search space and the samplers are
YAML configs (conf/hydra/sweeper/pareto.yaml, conf/hydra/sweeper/sampler/*.yaml).
"""

from dataclasses import dataclass, field
from typing import Any

from sweeper.config.schema import key

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


@dataclass
class ParetoSweeperConf:
    _target_: str = "hydra_plugins.sweeper_pareto.pareto_sweeper.ParetoSweeper"
    # The sampler node is a config with its own `_target_`: the search instantiates it
    # (with its seed and the running search), so Hydra must hand it over as config.
    _recursive_: bool = False
    # Search space in Hydra's sweep syntax: choice(...), range(...), interval(...),
    # tag(log, ...) for a log scale, tag(int, interval(...)) for integers. Sweeps given
    # on the command line (model=mlp,cnn) join it; plain overrides (epochs=1) replace it.
    # The default space is conf/hydra/sweeper/pareto.yaml; this schema gives the types.
    params: dict[str, str] = field(default_factory=dict)
    objective: str = key("energy_train_j", choices=tuple(OBJECTIVES), help="the second "
                         "objective, minimised (the first, val_accuracy, is maximised)")
    n_trials: int = key(12, ge=0, help="new trials per invocation; a resumed study grows by "
                        "this many")
    n_jobs: int = key(1, ge=1, help="trials asked and launched together (for parallel "
                      "launchers)")
    # The sampler: a config of the group conf/hydra/sweeper/sampler/ (an Optuna sampler as
    # `_target_` with its arguments), chosen with hydra/sweeper/sampler=NAME and tuned with
    # hydra.sweeper.sampler.ARG=VALUE; hydra.sweeper.sampler=NAME (a name) also picks one.
    # frontier (estimate each configuration's energy before running it, skip or stop what
    # cannot reach the front, end the search when nothing left can add to it; the default,
    # see benchmarks/README.md), nsga2, tpe, random; any optuna.samplers.* by `_target_`.
    sampler: Any = "frontier"
    seed: int | None = key(None, ge=0, help="sampler seed; a resumed study offsets it by its "
                           "trial count")
    energy_budget_j: float | None = key(None, gt=0, unit="J", help="stop launching trials "
                                        "once the study's trials have spent this many joules "
                                        "(energy_total_j over every invocation)")
    max_trial_energy_j: float | None = key(None, gt=0, unit="J", help="stop a trial early "
                                           "when its profile forecasts more training energy")
    prune_dominated: bool = key(True, help="once a trial reaches target_accuracy, stop later "
                                "trials whose forecast training energy exceeds its energy "
                                "objective")
    target_accuracy: float = key(1.0, gt=0, le=1, help="the accuracy of prune_dominated")
    study_name: str | None = key(None, check="name", help="null: derived from the sweep name "
                                 "and objective")
    storage: str | None = key(None, check="url_or_null", help="the study's database; null: "
                              "the app's storage.url (the runs' database)")
    print_front: bool = key(True, help="print the Pareto front when the search ends")
