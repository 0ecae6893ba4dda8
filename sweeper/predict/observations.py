"""Runs read from a store (or any run-like rows) as the estimator's observations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from sweeper.predict.estimator import TARGETS, Observation
from sweeper.store import Run, Store, Sweep


def hardware_label(run: Any) -> str:
    parts = [getattr(run, "host", None), getattr(run, "cpu_model", None)]
    gpu = getattr(run, "gpu_model", None)
    if gpu:
        parts.append(f"{getattr(run, 'gpu_count', 1) or 1}x {gpu}")
    parts.append(f"device {getattr(run, 'device', '?')}")
    return " / ".join(str(p) for p in parts if p)


def observations_from_runs(runs: Iterable[Any], target: str = "train") -> list[Observation]:
    """Completed runs with a positive energy per sample, MACs and parameter count."""
    column = TARGETS[target]
    out = []
    for r in runs:
        value = getattr(r, column, None)
        if (
            getattr(r, "status", None) != "completed"
            or value is None or not value > 0
            or not (r.params or 0) > 0 or not (r.macs_per_sample or 0) > 0
            or not r.hardware_id
        ):
            continue
        out.append(Observation(
            run_id=int(r.id), hardware_id=str(r.hardware_id),
            meter_source=str(r.meter_source or "unknown"), model=str(r.model),
            dataset=str(r.dataset), batch=int(r.batch), precision=str(r.precision),
            params=int(r.params), macs_per_sample=float(r.macs_per_sample),
            energy_per_sample_j=float(value), hardware_label=hardware_label(r),
        ))
    return out


def load_observations(
    store: Store, target: str = "train", sweep: str | None = None
) -> list[Observation]:
    """Observations of every completed run in the store (or in one sweep, by name)."""
    query = select(Run).where(Run.status == "completed").order_by(Run.id)
    if sweep is not None:
        query = query.join(Sweep, Run.sweep_id == Sweep.id).where(Sweep.name == sweep)
    with store.session() as session:
        runs = list(session.scalars(query))
    return observations_from_runs(runs, target)
