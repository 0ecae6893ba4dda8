"""Several GPUs for one run on one node: DistributedDataParallel under torchrun.

torchrun starts one process per GPU (WORLD_SIZE, RANK, LOCAL_RANK in the environment).
Every rank trains its shard of the data on cuda:LOCAL_RANK (or on the CPU with gloo).
Only rank 0 opens the store, measures energy (all GPUs the ranks use, each kept as its
own domain gpu:N) and records the run; the other ranks train in step and write nothing.

Coordination (go/skip before a run, the end of a run) goes through a gloo group, so
ranks waiting for rank 0's evaluation sleep on the CPU instead of spinning a GPU.
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sweeper.config.launch import launch

# Rank 0 evaluates and benchmarks inference while the others wait: allow it hours.
CONTROL_TIMEOUT = timedelta(hours=6)


_control: Any = None  # the gloo group for coordination, once initialised


def setup(device: torch.device) -> torch.device:
    """Join the process group (once per process) and return this rank's device."""
    from sweeper.errors import ConfigError

    info = launch()
    if not info.active:
        return device
    if info.world_size != info.local_world_size:
        raise ConfigError(
            f"torchrun with {info.world_size} processes over several nodes: sweeper measures "
            "one node's GPUs, so a run may span one node only (use --nnodes=1)"
        )
    if os.environ.get("SWEEPER_SWEEP_KIND") == "search":
        raise ConfigError(
            "a search under torchrun is not supported: each rank would ask the study for "
            "its own trials; run searches with one process per trial"
        )
    if device.type == "cuda":
        if device.index is not None:  # every rank must agree, whatever its LOCAL_RANK
            raise ConfigError(
                f"invalid value for 'device': {str(device)!r} under torchrun; each rank uses "
                "cuda:LOCAL_RANK, pass device=cuda or device=auto"
            )
        if torch.cuda.device_count() < info.local_world_size:
            raise ConfigError(
                f"torchrun started {info.local_world_size} processes but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible"
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    global _control
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_shutdown)
    if _control is None:
        _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return device


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the model when launched by torchrun, else the model unchanged.

    Not syncing buffers keeps forward passes free of collectives, so rank 0 can
    evaluate and benchmark inference alone (each rank keeps its own BatchNorm stats)."""
    if not launch().active:
        return model
    model = model.to(device)
    ids = [device.index] if device.type == "cuda" else None
    # Newer torch renames the option (and still syncs buffers once, at wrap time).
    params = inspect.signature(DistributedDataParallel).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(model, device_ids=ids, **{no_sync: False})


def measured_gpus(
    requested: tuple[int, ...] | None, device: torch.device
) -> tuple[int, ...] | None:
    """GPU indices rank 0 measures: energy.gpus if given, else every rank's GPU."""
    if requested is not None:
        return requested
    info = launch()
    if device.type != "cuda":
        return None
    if info.active:
        return tuple(range(info.local_world_size))
    return (device.index,) if device.index is not None else None


def sum_over_ranks(device: torch.device, *values: float) -> tuple[float, ...]:
    """Totals over all ranks (epoch loss, correct, samples), so stats cover the whole
    global batch; the values unchanged without torchrun. Every rank must call it."""
    if not launch().active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return tuple(float(v) for v in t.tolist())


def reduce_epoch(stats: Any, device: torch.device) -> Any:
    """An EpochStats summed over ranks: mean loss and accuracy over every sample."""
    if not launch().active:
        return stats
    samples = stats.samples
    loss, correct, total = sum_over_ranks(
        device, stats.loss * samples, stats.accuracy * samples, float(samples)
    )
    return dataclasses.replace(
        stats, loss=loss / max(total, 1.0), accuracy=correct / max(total, 1.0),
        samples=int(round(total)),
    )


def agree(go: bool) -> bool:
    """Rank 0 tells the others whether this run goes ahead (False: skipped by resume)."""
    if not launch().active:
        return go
    box = [go]
    dist.broadcast_object_list(box, src=0, group=_control)
    return bool(box[0])


def end_of_run() -> None:
    """All ranks meet here once rank 0 has recorded the run."""
    if launch().active:
        dist.barrier(group=_control)


def describe(device: torch.device) -> dict[str, Any]:
    """What the run record says about the launch: world size and the devices used."""
    info = launch()
    out: dict[str, Any] = {"world_size": info.world_size}
    if info.active:
        out.update(
            local_world_size=info.local_world_size,
            backend=str(dist.get_backend()) if dist.is_initialized() else None,
            devices=[
                f"cuda:{i}" if device.type == "cuda" else "cpu"
                for i in range(info.local_world_size)
            ],
        )
    return out
