"""Everything a measured run needs, built and checked before its row exists: data, model,
optimizer, loaders, meters, the hardware identity, the carbon intensity."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sweeper import energy
from sweeper._threads import wait_policy
from sweeper.config.launch import launch
from sweeper.config.spec import RunSpec
from sweeper.config.sweep import SweepContext
from sweeper.datasets import load_dataset
from sweeper.energy.power_limit import PowerCap
from sweeper.energy.resolution import min_span_s
from sweeper.errors import ConfigError, invalid_value
from sweeper.models import build_model, describe_model
from sweeper.run.machine import hardware_of, open_run_meters
from sweeper.store import Run, Store
from sweeper.store.schema import utcnow
from sweeper.training import distributed
from sweeper.training.loaders import LoaderOptions, make_loader, resolve_loader, train_loader
from sweeper.training.schedule import ScheduleSpec, make_scheduler
from sweeper.training.trainer import Trainer, make_optimizer


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
    power: PowerCap | None = None  # the GPU power limit this run holds (gpu.power_limit)
    macs_ptflops_per_sample: float | None = None  # the study's convention (ptflops)


def prepare(
    spec: RunSpec,
    store: Store,
    sweep: SweepContext,
    sweep_id: int,
    device: torch.device,
    carbon: energy.CarbonIntensity,
    power: PowerCap | None = None,
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
    per_process = len(data.train) // launch().world_size  # type: ignore[arg-type]
    if spec.batch > per_process:  # one short step per epoch: nothing would be learned
        raise invalid_value(
            "batch", spec.batch,
            f"at most the {per_process} training samples of {spec.dataset} per process",
        )
    try:
        model = build_model(spec.model, data.input_shape, data.num_classes, **spec.model_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid option for model {spec.model!r}: {exc}") from exc
    info = describe_model(model, data.input_shape)
    optimizer = make_optimizer(
        spec.optimizer, model.parameters(), spec.lr, spec.momentum, spec.weight_decay
    )
    scheduler = make_scheduler(
        ScheduleSpec(spec.scheduler, spec.epochs, spec.lr_step.epochs, spec.lr_step.gamma),
        optimizer,
    )
    trainer = Trainer(
        distributed.wrap_model(model, device), optimizer, device, spec.precision, scheduler
    )
    loading = resolve_loader(LoaderOptions(spec.loader.workers, spec.loader.pin_memory), device)
    eval_batch = max(spec.batch, 256)
    # Read once each: worker processes kept alive for a single pass would only hold memory
    # (the inference benchmark copies its batches to the device before it is timed).
    once = replace(loading, workers=0)
    loaders = {
        "train": train_loader(data.train, spec.batch, seed=spec.seed, settings=loading),
        "val": make_loader(data.val, eval_batch, shuffle=False, seed=spec.seed, settings=loading),
        "test": make_loader(data.test, eval_batch, shuffle=False, seed=spec.seed, settings=once),
        # Read after every epoch (inference.every_epoch), it keeps its workers as the
        # training loader does.
        "inference": make_loader(data.test, spec.inference.batch, shuffle=False, seed=spec.seed,
                                 settings=loading if spec.inference.every_epoch else once),
    }
    meters = open_run_meters(spec, device)  # every rank's GPU under torchrun
    described = meters.describe()
    # A limit sweeper set is a config dimension: the identity keeps the card's own limit.
    identity = power.identity(described) if power is not None else described
    hardware = hardware_of(device, identity).as_dict()
    hardware["meters"] = described
    if power is not None:
        hardware["gpu_power"] = power.record()
    hardware["distributed"] = distributed.describe(device)
    hardware["loader"] = {"workers": loading.workers, "pin_memory": loading.pin_memory}
    hardware["omp_wait_policy"] = wait_policy()  # spinning threads inflate CPU time
    return Prepared(
        spec=spec, store=store, sweep=sweep, sweep_id=sweep_id, device=device, trainer=trainer,
        loaders=loaders, meters=meters, params=info.params,
        macs_per_sample=info.macs_per_sample, hardware=hardware, carbon=carbon, power=power,
        macs_ptflops_per_sample=info.macs_ptflops_per_sample,
    )


def new_run_row(p: Prepared) -> Run:
    spec, hw = p.spec, p.hardware
    return Run(
        sweep_id=p.sweep_id, config=spec.config, config_hash=spec.config_hash,
        overrides=p.sweep.overrides, model=spec.model_label, dataset=spec.dataset, batch=spec.batch,
        lr=spec.lr, optimizer=spec.optimizer, epochs=spec.epochs, precision=spec.precision,
        device=str(p.device), seed=spec.seed, params=p.params,
        macs_per_sample=p.macs_per_sample, macs_ptflops_per_sample=p.macs_ptflops_per_sample,
        status="running", trial_number=spec.trial,
        started_at=utcnow(), pid=os.getpid(), heartbeat_at=utcnow(), host=str(hw["host"]),
        hardware_id=str(hw["hardware_id"]),
        cpu_model=str(hw["cpu_model"]), gpu_model=hw.get("gpu_model"),
        gpu_count=int(hw.get("gpu_count") or 0), hardware=hw, pue=spec.energy.pue,
        meter_source=p.meters.source,
    )


def inference_min_seconds(p: Prepared) -> float:
    """inference.min_seconds, or by default 20 refreshes of the slowest meter in use."""
    if p.spec.inference.min_seconds is not None:
        return p.spec.inference.min_seconds
    return min_span_s(p.meters.meters)


def profile_floors(p: Prepared) -> dict[str, float]:
    """The forecast profile's time floors (ProfileWindow keywords): warm-up at least
    forecast.warmup_seconds (default 10 refreshes of the slowest meter), the window at least
    forecast.min_seconds (default 20 refreshes)."""
    span_s = min_span_s(p.meters.meters)
    warmup_s, window_s = p.spec.forecast.warmup_seconds, p.spec.forecast.min_seconds
    return {
        "warmup_seconds": span_s / 2 if warmup_s is None else warmup_s,
        "min_seconds": span_s if window_s is None else window_s,
    }
