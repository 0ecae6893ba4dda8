"""Which GPUs a run's power limit applies to, and the limits a dead run left behind.

A run caps the GPUs it measures: its CUDA device (every rank's under torchrun), or the ones
``energy.gpus`` names (also on a CPU device, to cap GPUs the run does not compute on).
"""

from __future__ import annotations

import logging

import torch

from sweeper.config.spec import RunSpec
from sweeper.energy.power_limit import PowerCap, open_power_cap, restore_stale
from sweeper.errors import ConfigError
from sweeper.training import distributed

log = logging.getLogger(__name__)


def open_gpu_power(spec: RunSpec, device: torch.device) -> PowerCap | None:
    """Restore limits left by runs that died, then check this run's (None: it sets none).
    A refusal is one ConfigError line, before anything is stored."""
    try:
        for line in restore_stale():
            log.warning(line)
    except Exception as exc:  # a state file NVML cannot act on: say so, keep the run
        log.warning("could not restore GPU power limits left by an earlier run: %s", exc)
    request = spec.power_limit
    if not request.active:
        return None
    if device.type == "cuda":
        gpus = distributed.measured_gpus(spec.gpus, device)
    elif spec.gpus is not None:
        gpus = spec.gpus
    else:
        raise ConfigError(f"{request}: device {device} uses no GPU; set device=cuda, or "
                          "energy.gpus to the GPUs to cap")
    return open_power_cap(request, gpus)


def check_gpu_power(spec: RunSpec, device: torch.device) -> None:
    """A grid's job checked before the grid starts (range, permission), changing nothing."""
    cap = open_gpu_power(spec, device)
    if cap is not None:
        cap.close()
