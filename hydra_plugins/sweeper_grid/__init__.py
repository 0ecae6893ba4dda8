"""Hydra sweeper plugin `hydra/sweeper=grid`, the default sweeper of `python -m sweeper -m`:
Hydra's basic sweeper whose jobs sweeper checks once, as a whole grid, before the first."""
