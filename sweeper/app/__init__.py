"""App stage: Hydra callbacks (checking a grid, naming a sweep) and the end-of-sweep summary."""
