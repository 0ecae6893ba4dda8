"""What a job returns to Hydra, to the search sweeper and to the end-of-sweep summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class JobResult:
    """What a job returns to Hydra (and to the search sweeper)."""

    status: str  # completed | failed | interrupted | skipped | pruned (sweeper.run.stopping)
    run_id: int | None
    sweep_id: int
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    energy_train_j: float | None = None
    energy_inference_j: float | None = None
    energy_per_inference_sample_j: float | None = None
    energy_total_j: float | None = None
    co2_g: float | None = None
    meter_source: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
