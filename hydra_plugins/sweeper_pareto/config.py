"""Structured config of `hydra/sweeper=pareto`, registered in Hydra's ConfigStore.

Hydra's plugin scan imports this module on every start, so it stays light: no Optuna
or torch imports here.
"""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

# A search that fits a few minutes on a laptop CPU with the bundled digits set.
DEFAULT_PARAMS: dict[str, str] = {
    "model": "choice(mlp,cnn,resnet,vit)",
    "batch": "choice(32,64,128)",
    "lr": "tag(log, interval(1e-4, 1e-2))",
    "precision": "choice(fp32,bf16)",
    "epochs": "range(1,4)",
}


@dataclass
class ParetoSweeperConf:
    _target_: str = "hydra_plugins.sweeper_pareto.pareto_sweeper.ParetoSweeper"
    # Search space in Hydra's sweep syntax: choice(...), range(...), interval(...),
    # tag(log, ...) for a log scale, tag(int, interval(...)) for integers. Sweeps given
    # on the command line (model=mlp,cnn) join it; plain overrides (epochs=1) replace it.
    params: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    # Second objective, minimised (the first, val_accuracy, is maximised):
    # energy_train_j | energy_per_inference_sample_j | energy_total_j | co2_g
    objective: str = "energy_train_j"
    n_trials: int = 12  # new trials per invocation; a resumed study grows by this many
    n_jobs: int = 1  # trials asked and launched together (for parallel launchers)
    # nsga2 | tpe | random | frontier (estimate each configuration's energy before running
    # it, skip or stop those that cannot reach the front: sweeper/search/frontier.py)
    sampler: str = "nsga2"
    seed: int | None = None  # sampler seed; a resumed study offsets it by its trial count
    population_size: int = 8  # NSGA-II generation size
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


ConfigStore.instance().store(
    group="hydra/sweeper", name="pareto", node=ParetoSweeperConf, provider="sweeper"
)
