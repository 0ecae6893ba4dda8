"""sweeper: Hydra sweeps of ML training and inference, measured in joules."""

__version__ = "0.1.0"
