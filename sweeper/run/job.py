"""One sweep job: validate the config, then dispatch it to its mode (train, forecast or
estimate). Deciding whether to run at all (resume, torchrun ranks) happens here; measuring
happens in sweeper.run.measured, which every mode that trains shares.
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from sweeper import energy
from sweeper.config.launch import launch
from sweeper.config.spec import RunSpec, build_spec
from sweeper.config.storage import open_results
from sweeper.config.sweep import SweepContext, current_sweep
from sweeper.energy.power_limit import PowerCap
from sweeper.errors import ConfigError
from sweeper.run.estimate_mode import run_estimate
from sweeper.run.forecast_mode import execute_forecast
from sweeper.run.gpu_power import open_gpu_power
from sweeper.run.inference_gate import needs_inference
from sweeper.run.layers_mode import run_layer_catalog
from sweeper.run.liveness import reclaim_vanished_runs
from sweeper.run.measured import TakenByTwin
from sweeper.run.prepare import prepare
from sweeper.run.recording import sigterm_as_interrupt
from sweeper.run.result import JobResult
from sweeper.run.resume import completed_run
from sweeper.run.train_mode import execute_training
from sweeper.store import runs as store_runs
from sweeper.training import distributed
from sweeper.training.device import check_precision, resolve_device
from sweeper.training.heap import frozen_heap

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig) -> JobResult:
    spec = build_spec(cfg)
    mode = spec.mode
    if mode == "estimate":  # nothing runs and nothing is stored
        return run_estimate(cfg, spec, in_grid=_in_multirun())
    if mode in ("forecast", "layers") and launch().active:
        raise ConfigError(f"invalid value for 'mode': {mode!r} under torchrun; "
                          f"{'profile' if mode == 'forecast' else 'time the catalog'} on one "
                          "device (allowed here: train)")
    if mode == "layers":  # times single layers; stores the catalog, no run
        return run_layer_catalog(spec)
    device = distributed.setup(resolve_device(spec.device))  # cuda:LOCAL_RANK under torchrun
    check_precision(spec.precision, device)
    try:
        carbon = energy.carbon_intensity(spec.energy.country, spec.energy.region)
    except ValueError as exc:
        raise ConfigError(f"invalid value for 'energy.country'/'energy.region': {exc}") from exc
    sweep = current_sweep(spec)
    if not launch().is_main:
        return _follow(spec, sweep, device, carbon)
    cap = open_gpu_power(spec, device)  # checked before anything is stored
    if cap is None:
        return _run_main(spec, mode, sweep, device, carbon, None)
    # Set until the run is recorded, and the original limit back however it ends.
    with sigterm_as_interrupt(), cap:
        return _run_main(spec, mode, sweep, device, carbon, cap)


def _run_main(
    spec: RunSpec, mode: str, sweep: SweepContext, device: torch.device,
    carbon: energy.CarbonIntensity, cap: PowerCap | None,
) -> JobResult:
    store = open_results(spec.storage.url, spec.storage.outage_s)
    sweep_id = store_runs.ensure_sweep(
        store, sweep.name, kind=sweep.kind, command=sweep.command, sweep_dir=sweep.sweep_dir
    )
    reclaim_vanished_runs(store, sweep_id)
    if sweep.resume:
        done = completed_run(store, sweep_id, spec.config_hash,
                             needs_inference=needs_inference(spec.sweeper.inference_front))
        if done is not None:
            log.info(
                "skipping %s: already completed in sweep %r as run %d "
                "(pass sweeper.resume=false to run it again)", sweep.overrides, sweep.name, done,
            )
            distributed.agree(False)
            return JobResult(status="skipped", run_id=done, sweep_id=sweep_id)
    distributed.agree(True)
    prepared = prepare(spec, store, sweep, sweep_id, device, carbon, power=cap)
    execute = execute_forecast if mode == "forecast" else execute_training
    try:
        result = execute(prepared)
    except TakenByTwin as exc:
        prepared.meters.close()
        log.info("skipping %s: %s (this sweep is shared with another process)",
                 sweep.overrides or "this run", exc)
        return JobResult(status="skipped", run_id=exc.twin.id, sweep_id=sweep_id)
    _end_distributed_run(result)
    return result


def _in_multirun() -> bool:
    """Whether this job is one of a multirun (its estimate then joins the grid's table)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _follow(
    spec: RunSpec, sweep: SweepContext, device: torch.device, carbon: energy.CarbonIntensity
) -> JobResult:
    """A torchrun rank other than 0: trains its shard in step with rank 0, which
    measures every GPU and records the run; this rank writes nothing."""
    if not distributed.agree(True):
        return JobResult(status="skipped", run_id=None, sweep_id=0)
    p = prepare(spec, None, sweep, 0, device, carbon)  # type: ignore[arg-type]
    p.meters.close()
    with frozen_heap():  # as rank 0's measured run: a pause here would stall its steps
        for _ in range(spec.epochs):
            p.trainer.train_epoch(p.loaders["train"])
    distributed.end_of_run()
    return JobResult(status="completed", run_id=None, sweep_id=0)


def _end_distributed_run(result: JobResult) -> None:
    """Rank 0 releases the other ranks once the run is recorded. A run that stopped
    early leaves them inside a collective: the launch has to end (torchrun stops them)."""
    if not launch().active:
        return
    if result.status != "completed":
        raise RuntimeError(
            f"run {result.run_id} {result.status} on rank 0 under torchrun; "
            "the other ranks cannot finish it, so this launch stops"
        )
    distributed.end_of_run()
