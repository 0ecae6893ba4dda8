"""Reading one GPU through NVML: its energy (the counter, or power integrated between
reads) and its utilisation, memory and other processes (side figures for the logs).

Counter reads tell the GPU's ``RefreshTimeline`` when the call began and returned, so the
refreshes can be timestamped (sweeper.energy.refresh). GPUs without the counter integrate
power with the trapezoid rule: the instant-power field where NVML has it, else
``GetPowerUsage``, which on recent GPUs is a trailing 1 s mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sweeper.energy.nvml_devices import Gpu, instant_power_w
from sweeper.energy.types import MeterReadError

OTHER_PROCESSES = ".other_processes"  # stats key suffix: other compute processes on a GPU


@dataclass
class GpuStats:
    """Latest utilisation and memory of one GPU (as NVML reports them, over its last period)."""

    index: int
    utilization_gpu_pct: float
    utilization_mem_pct: float
    memory_used_bytes: int
    memory_total_bytes: int
    other_processes: int | None = None  # compute processes besides this one (None: unknown)


def read_counter(nvml: ModuleType | Any, g: Gpu, clock: Callable[[], float]) -> None:
    """Read the counter and tell its timeline when the call began and returned."""
    t0 = clock()
    mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
    g.energy_j = (mj - g.start_mj) / 1000.0
    assert g.timeline is not None
    g.timeline.observe(t0, g.energy_j, clock())


def read_field(nvml: ModuleType | Any, g: Gpu, clock: Callable[[], float]) -> None:
    """Read the instant-power field to time its refreshes (``RefreshTimeline.observe_field``:
    how old a sample's value may be); a field that does not read tells nothing."""
    instant_w = instant_power_w(nvml, g.handle)
    if instant_w is not None and g.timeline is not None:
        g.timeline.observe_field(clock(), instant_w)


def read_energy(nvml: ModuleType | Any, g: Gpu, clock: Callable[[], float]) -> float | None:
    """Bring ``g.energy_j`` up to now: counter difference, or power integrated since the last
    read. Returns GetPowerUsage's (or the instant field's) watts, None where neither reads;
    raises NVML's error."""
    power_w = float(nvml.nvmlDeviceGetPowerUsage(g.handle)) / 1000.0 if g.has_power else None
    if g.uses_counter:
        read_counter(nvml, g, clock)
        if g.has_instant and g.timeline is not None:
            instant_w = instant_power_w(nvml, g.handle)
            if instant_w is not None:
                g.timeline.observe_power(clock(), instant_w)
        return power_w
    if g.has_instant:
        instant_w = instant_power_w(nvml, g.handle)
        if instant_w is None:
            raise nvml.NVMLError("the instant-power field stopped reading")
        power_w = instant_w
    # has_power or has_instant is guaranteed at open without a counter
    now, p_w = clock(), power_w or 0.0
    g.energy_j += 0.5 * (g.last_power_w + p_w) * max(0.0, now - g.last_t_s)
    g.last_t_s, g.last_power_w = now, p_w
    return power_w


def gpu_stats(nvml: ModuleType | Any, g: Gpu) -> GpuStats:
    """Utilisation and memory in use now; MeterReadError if NVML cannot say."""
    try:
        util = nvml.nvmlDeviceGetUtilizationRates(g.handle)
        mem = nvml.nvmlDeviceGetMemoryInfo(g.handle)
    except nvml.NVMLError as e:
        raise MeterReadError(f"NVML stats of GPU {g.index} ({g.name}) failed: {e}") from e
    return GpuStats(
        g.index, float(util.gpu), float(util.memory), int(mem.used), int(mem.total),
        other_processes(nvml, g),
    )


def other_processes(nvml: ModuleType | Any, g: Gpu) -> int | None:
    """Compute processes on the GPU besides this one: NVML measures the whole GPU, so a
    shared GPU's energy includes theirs. None when NVML cannot list them."""
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(g.handle)
    except (nvml.NVMLError, AttributeError):
        return None
    # One listed process is this one: by its pid, or, in a container where NVML lists
    # host pids, whichever it is.
    return max(len({int(p.pid) for p in procs}) - 1, 0)


def flat_stats(stats: list[GpuStats]) -> dict[str, float]:
    """GPU stats flattened for the sampler, which aggregates them per phase."""
    out: dict[str, float] = {}
    for s in stats:
        out[f"gpu:{s.index}.util_pct"] = s.utilization_gpu_pct
        out[f"gpu:{s.index}.memory_used_mib"] = s.memory_used_bytes / 2**20
        if s.other_processes is not None:  # the sampler keeps a phase's peak
            out[f"gpu:{s.index}{OTHER_PROCESSES}"] = float(s.other_processes)
    return out
