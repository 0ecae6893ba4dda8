"""Multi-objective search (accuracy against energy) with Optuna, driven by the Hydra
sweeper plugin in hydra_plugins/sweeper_pareto."""
