"""Typed SQLAlchemy 2.0 mapping of everything a sweep records.

Storage never imports the training code: rows are filled from plain values by the
orchestration layer. Energy columns are nullable so a run can exist before (or
without) a measurement, and every energy figure travels with its meter source.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# 2: runs.pid and runs.heartbeat_at; 3: energy uncertainty and flags; 4: net-of-idle
# energies, idle power, machine load and phases.low_resolution; 5: runs.macs_ptflops_per_sample;
# 6: the forecast's 90% interval (runs.forecast_energy_train_low_j / _high_j); 7: the
# layer_costs table (mode=layers)
SCHEMA_VERSION = 7

RUN_STATUSES = ("pending", "running", "completed", "failed", "interrupted")
PHASE_KINDS = ("train_epoch", "eval", "test", "inference", "profile", "pause")
# Characters of a sweep's name and of its Optuna study's name (sweeps.name, study_name):
# PostgreSQL refuses a longer one, SQLite would keep it, so sweeper.config checks it first.
NAME_LENGTH = 200


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class SchemaInfo(Base):
    """One row: the schema version this database was written with."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    written_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """One invocation family: the jobs of a multirun (or a search) and its reruns."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="grid")  # grid | search | single
    command: Mapped[str] = mapped_column(Text, default="")
    sweep_dir: Mapped[str | None] = mapped_column(Text, default=None)
    study_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="sweep")


class Run(Base):
    """One training + evaluation + inference job and its measurements."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_sweep_hash", "sweep_id", "config_hash"),
        Index("ix_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id"))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64))
    overrides: Mapped[str] = mapped_column(Text, default="")

    model: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    batch: Mapped[int] = mapped_column(Integer)
    lr: Mapped[float] = mapped_column(Float)
    optimizer: Mapped[str] = mapped_column(String(32))
    epochs: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer, default=0)

    params: Mapped[int | None] = mapped_column(Integer, default=None)
    # MACs of one sample's forward pass in two conventions: matmuls, convolutions and
    # attention only (torch.utils.flop_counter), and ptflops', the study's counter (adds
    # bias, normalisation, activations, pooling; NULL for runs stored before version 5).
    macs_per_sample: Mapped[float | None] = mapped_column(Float, default=None)
    macs_ptflops_per_sample: Mapped[float | None] = mapped_column(Float, default=None)

    status: Mapped[str] = mapped_column(String(16), default="pending")
    error_type: Mapped[str | None] = mapped_column(String(200), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    trial_number: Mapped[int | None] = mapped_column(Integer, default=None)
    stop_reason: Mapped[str | None] = mapped_column(Text, default=None)

    started_at: Mapped[datetime | None] = mapped_column(default=None)
    # Liveness: a process that vanished (SIGKILL, out-of-memory killer, lost node) leaves its
    # row 'running'; pid and heartbeat let a later sweep tell it from a run still going.
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    train_duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    inference_duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    train_samples: Mapped[int | None] = mapped_column(Integer, default=None)
    inference_samples: Mapped[int | None] = mapped_column(Integer, default=None)

    train_loss: Mapped[float | None] = mapped_column(Float, default=None)
    val_accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    test_accuracy: Mapped[float | None] = mapped_column(Float, default=None)

    # Hardware identity: estimates and comparisons must never mix machines silently.
    host: Mapped[str | None] = mapped_column(String(200), default=None)
    hardware_id: Mapped[str | None] = mapped_column(String(64), default=None)
    cpu_model: Mapped[str | None] = mapped_column(String(200), default=None)
    gpu_model: Mapped[str | None] = mapped_column(String(200), default=None)
    gpu_count: Mapped[int | None] = mapped_column(Integer, default=None)
    hardware: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    # Energy (joules). E_tr and E_in as in the study; source says how it was measured.
    meter_source: Mapped[str | None] = mapped_column(String(32), default=None)
    energy_train_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_eval_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_inference_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_total_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_per_train_sample_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_per_inference_sample_j: Mapped[float | None] = mapped_column(Float, default=None)
    mean_power_w: Mapped[float | None] = mapped_column(Float, default=None)
    peak_power_w: Mapped[float | None] = mapped_column(Float, default=None)
    measurement_warning: Mapped[str | None] = mapped_column(Text, default=None)
    # Uncertainty (J) of the figures above: the phases' summed (train: train_epoch; eval:
    # eval and test; inference), and the run's from its first and last readings.
    energy_train_uncertainty_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_eval_uncertainty_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_inference_uncertainty_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_total_uncertainty_j: Mapped[float | None] = mapped_column(Float, default=None)
    # Net of idle (sweeper's addition; the study's E_tr, E_in are gross): gross - idle power
    # x duration, never below 0 (a clamp is said in measurement_warning). idle_power_w is the
    # baseline's total over the run's domains (0 for estimate domains, whose convention is
    # no idle); NULL when no baseline was measured, and then the net columns are NULL too.
    energy_train_net_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_inference_net_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_total_net_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_per_train_sample_net_j: Mapped[float | None] = mapped_column(Float, default=None)
    energy_per_inference_sample_net_j: Mapped[float | None] = mapped_column(Float, default=None)
    idle_power_w: Mapped[float | None] = mapped_column(Float, default=None)
    idle_baseline_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # Contention: CPU used by other processes (% of the machine) and the peak 1-min load
    # average while the run was measured; machine_busy = over the configured threshold.
    other_cpu_pct: Mapped[float | None] = mapped_column(Float, default=None)
    load_avg_1m: Mapped[float | None] = mapped_column(Float, default=None)
    machine_busy: Mapped[bool | None] = mapped_column(Boolean, default=None)

    co2_g: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_source: Mapped[str | None] = mapped_column(String(200), default=None)
    pue: Mapped[float | None] = mapped_column(Float, default=None)

    # The study's first finding: a short profile forecasts the whole run.
    forecast_window: Mapped[float | None] = mapped_column(Float, default=None)
    forecast_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    forecast_energy_train_j: Mapped[float | None] = mapped_column(Float, default=None)
    # its 90% interval (the profile's chunk scatter; NULL: too few chunks, or older rows)
    forecast_energy_train_low_j: Mapped[float | None] = mapped_column(Float, default=None)
    forecast_energy_train_high_j: Mapped[float | None] = mapped_column(Float, default=None)
    forecast_duration_train_s: Mapped[float | None] = mapped_column(Float, default=None)
    forecast_error: Mapped[float | None] = mapped_column(Float, default=None)

    sweep: Mapped[Sweep] = relationship(back_populates="runs")
    phases: Mapped[list[Phase]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Phase.id"
    )


class Phase(Base):
    """A measured stretch of a run: one train epoch, an evaluation, the inference benchmark."""

    __tablename__ = "phases"
    __table_args__ = (Index("ix_phases_run", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    index: Mapped[int] = mapped_column(Integer, default=0)
    start_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    steps: Mapped[int | None] = mapped_column(Integer, default=None)
    samples: Mapped[int | None] = mapped_column(Integer, default=None)
    loss: Mapped[float | None] = mapped_column(Float, default=None)
    accuracy: Mapped[float | None] = mapped_column(Float, default=None)
    energy_j: Mapped[float | None] = mapped_column(Float, default=None)
    mean_power_w: Mapped[float | None] = mapped_column(Float, default=None)
    meter_source: Mapped[str | None] = mapped_column(String(32), default=None)
    # +- joules of energy_j (both boundaries: refresh interpolation, counter resolution).
    energy_uncertainty_j: Mapped[float | None] = mapped_column(Float, default=None)
    # Why energy_j is NULL although measured: e.g. a mean power above what the devices can
    # draw. Such a figure is never stored as a measurement.
    energy_flag: Mapped[str | None] = mapped_column(Text, default=None)
    # GPU util % (mean) and memory MiB (peak) per GPU, and the process's CPU util % (mean):
    # whether a phase's energy went into work or into idling hardware.
    utilisation: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # Why the phase is too short for its meter's resolution (None: long enough).
    low_resolution: Mapped[str | None] = mapped_column(Text, default=None)

    run: Mapped[Run] = relationship(back_populates="phases")
    domains: Mapped[list[PhaseDomainEnergy]] = relationship(
        back_populates="phase", cascade="all, delete-orphan"
    )


class PhaseDomainEnergy(Base):
    """Energy of one phase on one device or RAPL domain (gpu:0, package-0, dram-0...)."""

    __tablename__ = "phase_domain_energy"

    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    energy_j: Mapped[float] = mapped_column(Float)
    energy_uncertainty_j: Mapped[float | None] = mapped_column(Float, default=None)

    phase: Mapped[Phase] = relationship(back_populates="domains")


class IdleBaseline(Base):
    """Idle power of one host's measured domains, reused by later runs within a max age.

    Measured with the run's own meters while nothing runs (a GPU holds a live CUDA context,
    as it does during a run). A new table: create_all adds it to older databases.
    """

    __tablename__ = "idle_baselines"
    __table_args__ = (Index("ix_idle_hw", "hardware_id", "meter_source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hardware_id: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(200))
    meter_source: Mapped[str] = mapped_column(String(32))
    measured_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_s: Mapped[float] = mapped_column(Float)
    power_w: Mapped[float] = mapped_column(Float)  # sum over the domains
    by_domain: Mapped[dict[str, Any]] = mapped_column(JSON)  # domain -> W (estimate: 0)
    hardware: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)


class LayerCost(Base):
    """The time of one layer shape of mode=layers' catalog on one machine: a forward and
    backward pass (training) and a forward pass without gradients (inference) of a single
    layer at one batch size, the median of its repeats with their spread. The estimator
    fits per-kind cost laws on these and sums them over a network's layers (issue 24). A
    new table: create_all adds it to older databases."""

    __tablename__ = "layer_costs"
    __table_args__ = (Index("ix_layer_costs_hw", "hardware_id", "precision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hardware_id: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(200))
    device: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(16))
    measured_at: Mapped[datetime] = mapped_column(default=utcnow)
    layer: Mapped[str] = mapped_column(String(200))  # e.g. Conv2d(64, 128, k3, s1, g1) 16x16
    kind: Mapped[str] = mapped_column(String(16))  # models.info.LAYER_KINDS
    groups: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    macs_per_sample: Mapped[float] = mapped_column(Float)
    elements_in_per_sample: Mapped[float] = mapped_column(Float)
    elements_out_per_sample: Mapped[float] = mapped_column(Float)
    params: Mapped[int] = mapped_column(Integer)
    train_s: Mapped[float] = mapped_column(Float)  # per call (one batch)
    train_spread: Mapped[float] = mapped_column(Float)  # interquartile range / median
    inference_s: Mapped[float] = mapped_column(Float)
    inference_spread: Mapped[float] = mapped_column(Float)
    repeats: Mapped[int] = mapped_column(Integer)
    load_avg_1m: Mapped[float | None] = mapped_column(Float, default=None)


class PowerSample(Base):
    """Raw sampler output, kept so traces can be re-analysed later."""

    __tablename__ = "power_samples"
    __table_args__ = (Index("ix_samples_run_t", "run_id", "t_s"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    t_s: Mapped[float] = mapped_column(Float)  # seconds since the run's sampler started
    domain: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    power_w: Mapped[float | None] = mapped_column(Float, default=None)
    energy_j: Mapped[float] = mapped_column(Float)  # cumulative since the sampler started
