"""Which GPUs a run's power limit applies to, and the limits a dead run left behind.

A run caps the GPUs it measures: its CUDA device (every rank's under torchrun), or the ones
``energy.gpus`` names (also on a CPU device, to cap GPUs the run does not compute on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from sweeper.config.spec import RunSpec
from sweeper.energy.power_limit import PowerCap, open_power_cap, restore_stale
from sweeper.energy.power_limit_auto import AutoPowerLimit
from sweeper.energy.resolution import min_span_s
from sweeper.energy.sampler import EnergySampler
from sweeper.errors import ConfigError
from sweeper.run.prepare import Prepared
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
    if request.auto and spec.mode == "forecast":
        raise ConfigError("invalid value for 'gpu.power_limit': 'auto' with mode=forecast; "
                          "allowed: a fixed limit (auto profiles the first epoch of training)")
    if device.type == "cuda":
        gpus = distributed.measured_gpus(spec.energy.gpus, device)
    elif spec.energy.gpus is not None:
        gpus = spec.energy.gpus
    else:
        raise ConfigError(f"{request}: device {device} uses no GPU; set device=cuda, or "
                          "energy.gpus to the GPUs to cap")
    return open_power_cap(request, gpus)


def check_gpu_power(spec: RunSpec, device: torch.device) -> None:
    """A grid's job checked before the grid starts (range, permission), changing nothing."""
    cap = open_gpu_power(spec, device)
    if cap is not None:
        cap.close()


def auto_power_limit(p: Prepared, sampler: EnergySampler) -> AutoPowerLimit | None:
    """gpu.power_limit=auto's step hook over the first epoch (None for any other limit):
    windows of at least 20 refreshes of the slowest meter, every meter's energy."""
    cap = p.power
    if cap is None or not cap.request.auto:
        return None
    device = p.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return AutoPowerLimit(cap, sampler.energy_so_far_j, time.perf_counter,
                          len(p.loaders["train"]), min_seconds=min_span_s(p.meters.meters),
                          sync=sync)


def with_auto(on_step: Callable[[int], None], auto: AutoPowerLimit | None
              ) -> Callable[[int], None]:
    """The training step hook, with auto's after it (the trainer counts steps from 1)."""
    if auto is None:
        return on_step

    def both(step: int) -> None:
        on_step(step)
        auto.on_step(step - 1)

    return both
