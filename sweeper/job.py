"""One sweep job: validate, build data and model, train, evaluate, benchmark inference,
and record every phase with its energy.

Failures inside a run are recorded (status, reason, energy so far) and do not escape,
so a multirun goes on with its next job. An interrupt (Ctrl-C, SIGTERM) is recorded
too, then re-raised so the process stops promptly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from datasets import load_dataset
from models import build_model, describe_model
from sweeper import distributed, energy
from sweeper.device import check_precision, describe_accelerator, resolve_device
from sweeper.forecast import ProfileWindow
from sweeper.hardware import describe_host
from sweeper.liveness import Heartbeat, reclaim_vanished_runs
from sweeper.modes import job_mode
from sweeper.progress import TrainingProgress
from sweeper.recording import (
    Recorder,
    RunError,
    close_run,
    energy_split,
    forecast_columns,
    record_cut_phases,
    sigterm_as_interrupt,
    uncertainty_columns,
)
from sweeper.spec import ConfigError, RunSpec, build_spec
from sweeper.stopping import PRUNED, EarlyStop, energy_limit, guard_steps
from sweeper.store import Run, Store, open_store
from sweeper.store import runs as store_runs
from sweeper.store.schema import utcnow
from sweeper.sweepinfo import SweepContext, current_sweep
from sweeper.train import Trainer, make_loader, make_optimizer

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """What a job returns to Hydra (and to the search sweeper)."""

    status: str  # completed | failed | interrupted | skipped | pruned (sweeper.stopping)
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


@dataclass
class Prepared:
    """Everything built and checked before a run row exists."""

    spec: RunSpec
    store: Store
    sweep: SweepContext
    sweep_id: int
    device: torch.device
    trainer: Trainer
    loaders: dict[str, torch.utils.data.DataLoader]
    meters: energy.MeterSet
    params: int
    macs_per_sample: float
    hardware: dict[str, Any]
    carbon: energy.CarbonIntensity


def run_job(cfg: DictConfig, base_dir: str | Path | None = None) -> JobResult:
    spec = build_spec(cfg)
    mode = job_mode(cfg)
    if mode == "estimate":  # nothing runs and nothing is stored
        from sweeper.estimate_mode import run_estimate

        return run_estimate(cfg, spec, base_dir)
    if mode == "forecast" and distributed.launch().active:
        raise ConfigError("invalid value for 'mode': 'forecast' under torchrun; profile on one "
                          "device (allowed here: train)")
    device = distributed.setup(resolve_device(spec.device))  # cuda:LOCAL_RANK under torchrun
    check_precision(spec.precision, device)
    try:
        carbon = energy.carbon_intensity(spec.country, spec.region)
    except ValueError as exc:
        raise ConfigError(f"invalid value for 'energy.country'/'energy.region': {exc}") from exc
    sweep = current_sweep(spec)
    if not distributed.is_main():
        return _follow(spec, sweep, device, carbon)
    store = open_store(spec.storage_url, base_dir=base_dir or sweep.base_dir)
    sweep_id = store_runs.ensure_sweep(
        store, sweep.name, kind=sweep.kind, command=sweep.command, sweep_dir=sweep.sweep_dir
    )
    reclaim_vanished_runs(store, sweep_id)
    if sweep.resume:
        done = store_runs.completed_run_id(store, sweep_id, spec.config_hash)
        if done is not None:
            log.info(
                "skipping %s: already completed in sweep %r as run %d "
                "(pass sweeper.resume=false to run it again)", sweep.overrides, sweep.name, done,
            )
            distributed.agree(False)
            return JobResult(status="skipped", run_id=done, sweep_id=sweep_id)
    distributed.agree(True)
    prepared = _prepare(spec, store, sweep, sweep_id, device, carbon)
    if mode == "forecast":
        from sweeper.forecast_mode import execute_forecast

        result = execute_forecast(prepared)
    else:
        result = _execute(prepared)
    _end_distributed_run(result)
    return result


def _follow(
    spec: RunSpec, sweep: SweepContext, device: torch.device, carbon: energy.CarbonIntensity
) -> JobResult:
    """A torchrun rank other than 0: trains its shard in step with rank 0, which
    measures every GPU and records the run; this rank writes nothing."""
    if not distributed.agree(True):
        return JobResult(status="skipped", run_id=None, sweep_id=0)
    p = _prepare(spec, None, sweep, 0, device, carbon)  # type: ignore[arg-type]
    p.meters.close()
    for _ in range(spec.epochs):
        p.trainer.train_epoch(p.loaders["train"])
    distributed.end_of_run()
    return JobResult(status="completed", run_id=None, sweep_id=0)


def _end_distributed_run(result: JobResult) -> None:
    """Rank 0 releases the other ranks once the run is recorded. A run that stopped
    early leaves them inside a collective: the launch has to end (torchrun stops them)."""
    if not distributed.launch().active:
        return
    if result.status != "completed":
        raise RuntimeError(
            f"run {result.run_id} {result.status} on rank 0 under torchrun; "
            "the other ranks cannot finish it, so this launch stops"
        )
    distributed.end_of_run()


def _prepare(
    spec: RunSpec,
    store: Store,
    sweep: SweepContext,
    sweep_id: int,
    device: torch.device,
    carbon: energy.CarbonIntensity,
) -> Prepared:
    torch.manual_seed(spec.seed)
    if spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    options = dict(spec.dataset_options)
    root = Path(str(options.pop("root", "data"))).expanduser()
    if not root.is_absolute():
        root = Path(sweep.base_dir) / root
    try:
        data = load_dataset(spec.dataset, root=root, seed=spec.seed, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option for dataset {spec.dataset!r}: {exc}") from exc
    try:
        model = build_model(spec.model, data.input_shape, data.num_classes, **spec.model_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option for model {spec.model!r}: {exc}") from exc
    info = describe_model(model, data.input_shape)
    optimizer = make_optimizer(
        spec.optimizer, model.parameters(), spec.lr, spec.momentum, spec.weight_decay
    )
    trainer = Trainer(distributed.wrap_model(model, device), optimizer, device, spec.precision)
    loaders = {
        "train": distributed.train_loader(data.train, spec.batch, seed=spec.seed),
        "val": make_loader(data.val, max(spec.batch, 256), shuffle=False, seed=spec.seed),
        "test": make_loader(data.test, max(spec.batch, 256), shuffle=False, seed=spec.seed),
        "inference": make_loader(data.test, spec.inference_batch, shuffle=False, seed=spec.seed),
    }
    gpus = distributed.measured_gpus(spec.gpus, device)  # every rank's GPU under torchrun
    meters = energy.open_meters(
        spec.meter, gpu_indices=gpus if device.type == "cuda" else (), cpu_tdp_w=spec.cpu_tdp_w
    )
    hardware = describe_host(describe_accelerator(device), meters.describe()).as_dict()
    hardware["meters"] = meters.describe()
    hardware["distributed"] = distributed.describe(device)
    return Prepared(
        spec=spec, store=store, sweep=sweep, sweep_id=sweep_id, device=device, trainer=trainer,
        loaders=loaders, meters=meters, params=info.params,
        macs_per_sample=info.macs_per_sample, hardware=hardware, carbon=carbon,
    )


def new_run_row(p: Prepared) -> Run:
    spec, hw = p.spec, p.hardware
    return Run(
        sweep_id=p.sweep_id, config=spec.config, config_hash=spec.config_hash,
        overrides=p.sweep.overrides, model=spec.model, dataset=spec.dataset, batch=spec.batch,
        lr=spec.lr, optimizer=spec.optimizer, epochs=spec.epochs, precision=spec.precision,
        device=str(p.device), seed=spec.seed, params=p.params,
        macs_per_sample=p.macs_per_sample, status="running", trial_number=spec.trial,
        started_at=utcnow(), pid=os.getpid(), heartbeat_at=utcnow(), host=str(hw["host"]),
        hardware_id=str(hw["hardware_id"]),
        cpu_model=str(hw["cpu_model"]), gpu_model=hw.get("gpu_model"),
        gpu_count=int(hw.get("gpu_count") or 0), hardware=hw, pue=spec.pue,
        meter_source=p.meters.source,
    )


def _execute(p: Prepared) -> JobResult:
    spec, store = p.spec, p.store
    limit = energy_limit(spec.config)  # checked before the run row exists
    run_id = store_runs.insert_run(store, new_run_row(p))
    recorder = Recorder(store, run_id, spec.keep_samples)
    sampler = energy.EnergySampler(
        p.meters.meters, sample_hz=spec.sample_hz, on_samples=recorder.samples
    )
    train_steps = len(p.loaders["train"]) * spec.epochs
    # Training steps only: a window that crosses an epoch boundary skips the evaluation.
    profile = ProfileWindow(
        train_steps, spec.forecast_window, spec.forecast_warmup_steps,
        lambda: sampler.energy_so_far_j() - recorder.energy_of("eval"),
        lambda: time.perf_counter() - recorder.duration_of("eval"),
    )
    on_step = guard_steps(profile, limit)
    values: dict[str, Any] = {}
    status = "completed"
    error: RunError = None
    interrupt: KeyboardInterrupt | None = None
    t0 = time.perf_counter()
    summary: energy.EnergySummary | None = None
    try:
        with sigterm_as_interrupt(), Heartbeat(store, run_id):
            sampler.start()
            try:
                values.update(_phases(p, sampler, recorder, profile, train_steps, on_step))
            finally:
                summary = sampler.stop()
                p.meters.close()
    except EarlyStop as exc:  # the energy rule, not a failure: recorded with its reason
        status = PRUNED
        values["stop_reason"] = str(exc)
        log.info("run %d pruned: %s", run_id, exc)
    except KeyboardInterrupt as exc:
        status, interrupt = "interrupted", exc
        error = (type(exc).__name__, str(exc) or "interrupted by the user")
    except Exception as exc:  # a broken configuration must not stop the sweep
        status = "failed"
        error = (type(exc).__name__, str(exc))
        log.error("run %d failed: %s: %s", run_id, *error)
    record_cut_phases(recorder, sampler)  # a cut phase, and phases waiting for a refresh
    values.update(_energy_columns(p, recorder, summary, values))
    if profile.result is not None:
        forecast = profile.result
        values.update(forecast_columns(forecast))
        actual = values.get("energy_train_j")
        if status == "completed" and actual:
            values["forecast_error"] = (forecast.energy_j - actual) / actual
    close_run(store, run_id, values, status, error, t0)
    if interrupt is not None:
        raise interrupt
    return JobResult(
        status=status, run_id=run_id, sweep_id=p.sweep_id,
        val_accuracy=values.get("val_accuracy"), test_accuracy=values.get("test_accuracy"),
        energy_train_j=values.get("energy_train_j"),
        energy_inference_j=values.get("energy_inference_j"),
        energy_per_inference_sample_j=values.get("energy_per_inference_sample_j"),
        energy_total_j=values.get("energy_total_j"), co2_g=values.get("co2_g"),
        meter_source=values.get("meter_source"),
        error=None if error is None else f"{error[0]}: {error[1]}",
    )


def _phases(
    p: Prepared,
    sampler: energy.EnergySampler,
    recorder: Recorder,
    profile: ProfileWindow,
    train_steps: int,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    spec, trainer, loaders = p.spec, p.trainer, p.loaders
    out: dict[str, Any] = {}
    label = f"{spec.model}/{spec.dataset} b{spec.batch} {spec.precision}"
    with TrainingProgress(label, train_steps, enabled=spec.progress) as bar:
        profile.start()
        for epoch in range(spec.epochs):
            with sampler.phase("train_epoch", epoch) as ph:
                stats = trainer.train_epoch(
                    loaders["train"], on_step or profile.on_step, bar.advance
                )
            recorder.phase(ph.result, steps=stats.steps, samples=stats.samples, loss=stats.loss,
                           accuracy=stats.accuracy)
            with sampler.phase("eval", epoch) as ph:
                val = trainer.evaluate(loaders["val"])
            recorder.phase(ph.result, samples=val.samples, loss=val.loss, accuracy=val.accuracy)
            bar.set_status(f"epoch {epoch + 1}/{spec.epochs} loss {stats.loss:.3f} "
                           f"val acc {val.accuracy:.3f}")
            out.update(train_loss=stats.loss, val_accuracy=val.accuracy)
            out["train_samples"] = out.get("train_samples", 0) + stats.samples
    with sampler.phase("test", 0) as ph:
        test = trainer.evaluate(loaders["test"])
    recorder.phase(ph.result, samples=test.samples, loss=test.loss, accuracy=test.accuracy)
    out["test_accuracy"] = test.accuracy
    if spec.inference_batches > 0:
        with sampler.phase("inference", 0) as ph:
            inf = trainer.inference_benchmark(
                loaders["inference"], spec.inference_batches, spec.inference_warmup_batches
            )
        recorder.phase(ph.result, steps=inf.batches, samples=inf.samples)
        out["inference_samples"] = inf.samples
    return out


def _energy_columns(
    p: Prepared,
    recorder: Recorder,
    summary: energy.EnergySummary | None,
    values: dict[str, Any],
) -> dict[str, Any]:
    """Per-run energy, power and carbon from the recorded phases and the sampler summary."""
    spec = p.spec
    out: dict[str, Any] = {
        "train_duration_s": recorder.duration_of("train_epoch") or None,
        "inference_duration_s": recorder.duration_of("inference") or None,
    }
    if not recorder.phases and summary is None:
        return out
    split = energy_split(recorder.energy_of)
    total = summary.energy_j if summary is not None else sum(split.values())
    out.update(split, energy_total_j=total)
    if values.get("train_samples"):
        out["energy_per_train_sample_j"] = split["energy_train_j"] / values["train_samples"]
    if values.get("inference_samples"):
        out["energy_per_inference_sample_j"] = (
            split["energy_inference_j"] / values["inference_samples"]
        )
    uncertainty = uncertainty_columns(recorder.phases, summary)
    flagged = uncertainty.pop("flagged_phases", None)
    out.update(uncertainty)
    warnings = ([*summary.warnings] if summary is not None else []) + ([flagged] if flagged else [])
    out["measurement_warning"] = "; ".join(warnings) or None
    if summary is not None:
        out.update(
            meter_source=summary.source, mean_power_w=summary.mean_power_w,
            peak_power_w=summary.peak_power_w,
        )
    intensity = p.carbon
    out.update(
        co2_g=energy.co2_g(total, intensity.g_per_kwh, spec.pue),
        carbon_intensity_g_per_kwh=intensity.g_per_kwh, carbon_source=intensity.source,
    )
    return out
