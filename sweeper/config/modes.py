"""What a job does: train and measure (the default), forecast from a profile, or estimate.

Read here, before any work, so a bad value is refused like every other config error.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from sweeper.errors import invalid_value

MODES = ("train", "forecast", "estimate")


def job_mode(cfg: DictConfig) -> str:
    value = OmegaConf.select(cfg, "mode", default="train")
    if value not in MODES:
        raise invalid_value("mode", value, ", ".join(MODES))
    return str(value)
