"""The learning-rate schedule of a run, stepped once per training epoch.

The study annealed its lr with cosine annealing over the whole run (T_max = epochs, as in
kuangliu/pytorch-cifar); `step` multiplies the lr by a factor every few epochs. The lr does
not change the compute of a step, so the schedule changes accuracy, never the joules of an
epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCHEDULERS = ("none", "cosine", "step")


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = "none"  # one of SCHEDULERS
    epochs: int = 1  # the run's length: cosine's T_max
    step_epochs: int = 30  # step: epochs between two multiplications
    gamma: float = 0.1  # step: the factor


def make_scheduler(
    spec: ScheduleSpec, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """torch's scheduler for `spec`, or None for a constant lr."""
    if spec.name == "none":
        return None
    if spec.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
    if spec.name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=spec.step_epochs, gamma=spec.gamma
        )
    raise ValueError(f"unknown scheduler {spec.name!r}; expected one of: {', '.join(SCHEDULERS)}")


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
