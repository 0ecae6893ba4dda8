"""The machine a run is stored under: the meters a run on a device opens, and the
`hardware_id` they give it (host, CPU, accelerator and, where NVML measures, the GPUs'
driver and power limits). One home, so runs, mode=layers' catalog and the estimates that
look either up (`mode=estimate`, the frontier's priors, a grid's forecast) agree on a GPU
machine too, where a driver or limit is part of the identity."""

from __future__ import annotations

from functools import cache

import torch

from sweeper import energy
from sweeper.config.spec import RunSpec
from sweeper.energy.hardware import Hardware, describe_host
from sweeper.training import distributed
from sweeper.training.device import describe_accelerator, resolve_device


def open_run_meters(spec: RunSpec, device: torch.device) -> energy.MeterSet:
    """The meters a run of `spec` on `device` measures with (every rank's GPU under
    torchrun, or energy.gpus)."""
    return _open_meters(device, spec.meter, _gpus(spec), spec.energy.cpu_tdp_w)


def hardware_of(device: torch.device, described: dict[str, str]) -> Hardware:
    """The machine, from its accelerator and its meters' description."""
    return describe_host(describe_accelerator(device), described)


def machine_id(spec: RunSpec) -> str:
    """The hardware_id a run of `spec` would store, without running it (the meters are
    opened and closed for their description; cached for the process)."""
    return _machine_id(spec.device, spec.meter, _gpus(spec), spec.energy.cpu_tdp_w)


def _gpus(spec: RunSpec) -> tuple[int, ...] | None:
    return None if spec.energy.gpus is None else tuple(spec.energy.gpus)


def _open_meters(device: torch.device, meter: str, gpus: tuple[int, ...] | None,
                 cpu_tdp_w: float | None) -> energy.MeterSet:
    measured = distributed.measured_gpus(gpus, device)
    return energy.open_meters(meter, gpu_indices=measured if device.type == "cuda" else (),
                              cpu_tdp_w=cpu_tdp_w)


@cache
def _machine_id(device_name: str, meter: str, gpus: tuple[int, ...] | None,
                cpu_tdp_w: float | None) -> str:
    device = resolve_device(device_name)
    with _open_meters(device, meter, gpus, cpu_tdp_w) as meters:
        described = meters.describe()
    return hardware_of(device, described).hardware_id
