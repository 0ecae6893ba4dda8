"""Hydra sweeper plugin `hydra/sweeper=pareto`: an Optuna multi-objective search of
accuracy against energy, shipped with sweeper (see sweeper.search for the logic)."""
