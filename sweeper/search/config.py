"""The settings of `hydra/sweeper=pareto`, with their defaults: the one place they are written.

Hydra's plugin scan imports this on every start (through hydra_plugins.sweeper_pareto), so
it stays light: no Optuna or torch imports. The default search space and the samplers are
YAML configs (conf/hydra/sweeper/pareto.yaml, conf/hydra/sweeper/sampler/*.yaml).
"""

from dataclasses import dataclass, field
from typing import Any


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
    # Second objective, minimised (the first, val_accuracy, is maximised):
    # energy_train_j | energy_per_inference_sample_j | energy_total_j | co2_g
    objective: str = "energy_train_j"
    n_trials: int = 12  # new trials per invocation; a resumed study grows by this many
    n_jobs: int = 1  # trials asked and launched together (for parallel launchers)
    # The sampler: a config of the group conf/hydra/sweeper/sampler/ (an Optuna sampler as
    # `_target_` with its arguments), chosen with hydra/sweeper/sampler=NAME and tuned with
    # hydra.sweeper.sampler.ARG=VALUE; hydra.sweeper.sampler=NAME (a name) also picks one.
    # frontier (estimate each configuration's energy before running it, skip or stop what
    # cannot reach the front, end the search when nothing left can add to it; the default,
    # see benchmarks/README.md), nsga2, tpe, random; any optuna.samplers.* by `_target_`.
    sampler: Any = "frontier"
    seed: int | None = None  # sampler seed; a resumed study offsets it by its trial count
    # Stop launching trials once the study's trials have spent this many joules
    # (energy_total_j summed over every invocation of the study); null: no budget.
    energy_budget_j: float | None = None
    # Stop a trial early when its profile forecasts more training energy than this.
    max_trial_energy_j: float | None = None
    # Once a trial reaches target_accuracy, stop later trials whose forecast training
    # energy exceeds its energy objective: they cannot beat it on either objective.
    prune_dominated: bool = True
    target_accuracy: float = 1.0
    study_name: str | None = None  # null: derived from the sweep name and objective
    storage: str | None = None  # null: the app's storage.url (the runs' database)
    print_front: bool = True  # print the Pareto front when the search ends
