"""Runs, phases and power traces read from the store into pandas frames.

The report only reads: it never writes to the store and never imports training code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from sweeper.datasets.names import CLASS_COUNTS
from sweeper.pareto import at_chance
from sweeper.store import Phase, PhaseDomainEnergy, PowerSample, Run, Store, Sweep

RUN_COLUMNS = (
    "id", "model", "dataset", "batch", "lr", "optimizer", "epochs", "precision", "device",
    "seed", "status", "params", "macs_per_sample", "hardware_id", "host", "cpu_model",
    "gpu_model", "gpu_count", "meter_source", "energy_train_j", "energy_eval_j",
    "energy_inference_j", "energy_total_j", "energy_per_train_sample_j",
    "energy_per_inference_sample_j", "mean_power_w", "peak_power_w", "co2_g",
    "carbon_intensity_g_per_kwh", "pue", "duration_s", "train_duration_s",
    "inference_duration_s", "train_samples", "inference_samples", "train_loss",
    "val_accuracy", "test_accuracy", "forecast_window", "forecast_steps",
    "forecast_energy_train_j", "forecast_duration_train_s", "forecast_error", "error_type",
    "error_message", "measurement_warning", "trial_number", "overrides", "config_hash",
    "started_at", "energy_train_net_j", "energy_inference_net_j", "energy_total_net_j",
    "energy_per_train_sample_net_j", "energy_per_inference_sample_net_j", "idle_power_w",
    "other_cpu_pct", "load_avg_1m", "machine_busy", "energy_train_uncertainty_j",
    "energy_inference_uncertainty_j", "energy_total_uncertainty_j",
)
NUMERIC_RUN_COLUMNS = (
    "lr", "params", "macs_per_sample", "energy_train_j", "energy_eval_j", "energy_inference_j",
    "energy_total_j", "energy_per_train_sample_j", "energy_per_inference_sample_j",
    "mean_power_w", "peak_power_w", "co2_g", "carbon_intensity_g_per_kwh", "pue", "duration_s",
    "train_duration_s", "inference_duration_s", "train_samples", "inference_samples",
    "train_loss", "val_accuracy", "test_accuracy", "forecast_window", "forecast_steps",
    "forecast_energy_train_j", "forecast_duration_train_s", "forecast_error",
    "energy_train_net_j", "energy_inference_net_j", "energy_total_net_j",
    "energy_per_train_sample_net_j", "energy_per_inference_sample_net_j", "idle_power_w",
    "other_cpu_pct", "load_avg_1m", "energy_train_uncertainty_j",
    "energy_inference_uncertainty_j", "energy_total_uncertainty_j",
)
PHASE_COLUMNS = (
    "id", "run_id", "kind", "index", "start_s", "duration_s", "steps", "samples", "loss",
    "accuracy", "energy_j", "mean_power_w", "meter_source", "low_resolution",
)


def is_estimate(source: object) -> bool:
    """An energy figure whose source names the estimate meter (alone or combined)."""
    return isinstance(source, str) and "estimate" in source


def load_runs(
    store: Store, sweeps: Sequence[str] = (), run_ids: Sequence[int] = ()
) -> pd.DataFrame:
    """One row per run, plus derived columns: sweep, repeat, num_classes, macs_per_param,
    estimated, selection_accuracy (val, else test) with selection_set, at_chance and
    forecast_co2_g."""
    query = select(Run, Sweep.name).join(Sweep, Run.sweep_id == Sweep.id).order_by(Run.id)
    if sweeps:
        query = query.where(Sweep.name.in_(list(sweeps)))
    if run_ids:
        query = query.where(Run.id.in_(list(run_ids)))
    records = []
    with store.session() as session:
        for run, sweep_name in session.execute(query):
            row = {c: getattr(run, c) for c in RUN_COLUMNS}
            row["sweep"] = sweep_name
            row["repeat"] = (run.config or {}).get("repeat", 0)
            row["num_classes"] = class_count(run.dataset, run.config or {})
            records.append(row)
    frame = pd.DataFrame.from_records(
        records, columns=[*RUN_COLUMNS, "sweep", "repeat", "num_classes"])
    for column in NUMERIC_RUN_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["macs_per_param"] = frame["macs_per_sample"] / frame["params"].where(frame["params"] > 0)
    frame["estimated"] = frame["meter_source"].map(is_estimate).astype(bool)
    # Fronts are chosen on validation accuracy; a protocol without a validation split (the
    # study's: val_fraction=0) has only test accuracy, and `selection_set` says so.
    has_val = frame["val_accuracy"].notna()
    frame["selection_accuracy"] = frame["val_accuracy"].where(has_val, frame["test_accuracy"])
    frame["selection_set"] = np.where(
        has_val, "val", np.where(frame["test_accuracy"].notna(), "test", None))
    # At chance: every accuracy the run has is within CHANCE_MARGIN of 1/num_classes.
    best = frame[["val_accuracy", "test_accuracy"]].max(axis=1)
    frame["at_chance"] = at_chance(best, frame["num_classes"].astype(float))
    frame["forecast_co2_g"] = (
        frame["forecast_energy_train_j"] / 3.6e6 * frame["carbon_intensity_g_per_kwh"]
        * frame["pue"].fillna(1.0)
    )
    return frame


def class_count(dataset: str | None, config: dict) -> float:
    """The run's number of classes: its dataset.num_classes option, else the data set's."""
    options = config.get("dataset")
    if isinstance(options, dict) and isinstance(options.get("num_classes"), int):
        return float(options["num_classes"])
    return float(CLASS_COUNTS.get(str(dataset), np.nan))


def sweep_names(store: Store) -> list[tuple[str, int]]:
    """Every sweep in the store with its number of runs, oldest first."""
    query = (
        select(Sweep.name, func.count(Run.id))
        .join(Run, Run.sweep_id == Sweep.id, isouter=True)
        .group_by(Sweep.id, Sweep.name)
        .order_by(Sweep.id)
    )
    with store.session() as session:
        return [(str(name), int(count)) for name, count in session.execute(query)]


def load_phases(store: Store, run_ids: Sequence[int]) -> pd.DataFrame:
    """Every phase of the given runs, with an `estimated` flag."""
    records = []
    ids = [int(i) for i in run_ids]
    with store.session() as session:
        for start in range(0, len(ids), 500):
            query = select(Phase).where(Phase.run_id.in_(ids[start:start + 500]))
            for phase in session.scalars(query.order_by(Phase.run_id, Phase.id)):
                records.append({c: getattr(phase, c) for c in PHASE_COLUMNS})
    frame = pd.DataFrame.from_records(records, columns=list(PHASE_COLUMNS))
    frame["estimated"] = frame["meter_source"].map(is_estimate).astype(bool)
    return frame


def load_phase_domains(store: Store, run_ids: Sequence[int]) -> pd.DataFrame:
    """Per-phase energy split by device or RAPL domain."""
    columns = ["run_id", "phase_id", "kind", "index", "domain", "source", "energy_j"]
    records = []
    ids = [int(i) for i in run_ids]
    with store.session() as session:
        for start in range(0, len(ids), 500):
            query = (
                select(Phase.run_id, Phase.id, Phase.kind, Phase.index, PhaseDomainEnergy.domain,
                       PhaseDomainEnergy.source, PhaseDomainEnergy.energy_j)
                .join(PhaseDomainEnergy, PhaseDomainEnergy.phase_id == Phase.id)
                .where(Phase.run_id.in_(ids[start:start + 500]))
                .order_by(Phase.run_id, Phase.id)
            )
            records.extend(tuple(r) for r in session.execute(query))
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["estimated"] = frame["source"].map(is_estimate).astype(bool)
    return frame


def load_power_trace(store: Store, run_id: int) -> pd.DataFrame:
    """The raw sampler trace of one run: t_s, domain, source, power_w, energy_j."""
    query = (
        select(PowerSample.t_s, PowerSample.domain, PowerSample.source, PowerSample.power_w,
               PowerSample.energy_j)
        .where(PowerSample.run_id == run_id)
        .order_by(PowerSample.t_s)
    )
    with store.session() as session:
        rows = [tuple(r) for r in session.execute(query)]
    return pd.DataFrame.from_records(
        rows, columns=["t_s", "domain", "source", "power_w", "energy_j"]
    )


def runs_with_samples(store: Store, run_ids: Sequence[int]) -> list[int]:
    """Those of run_ids that have a stored power trace."""
    ids = [int(i) for i in run_ids]
    if not ids:
        return []
    query = select(PowerSample.run_id).where(PowerSample.run_id.in_(ids)).distinct()
    with store.session() as session:
        return sorted(int(r) for r in session.scalars(query))
