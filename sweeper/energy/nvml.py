"""NVIDIA GPU energy through NVML (nvidia-ml-py, imported as ``pynvml``).

Volta and newer GPUs keep a cumulative energy counter (millijoules since driver load), which
makes phase energy exact. Older GPUs, and some virtualised ones, only report instantaneous
power; there we integrate power samples with the trapezoid rule, so accuracy depends on how
often the sampler polls. The meter only reads: it never changes clocks or power limits.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sweeper.energy.types import DomainReading, MeterReadError
from sweeper.errors import MeterUnavailable


def _text(value: Any) -> str:
    """NVML strings are bytes in old bindings and str in new ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class GpuStats:
    """Latest utilisation and memory of one GPU (as NVML reports them, over its last period)."""

    index: int
    utilization_gpu_pct: float
    utilization_mem_pct: float
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass
class _Gpu:
    index: int
    handle: Any
    name: str
    uses_counter: bool
    has_power: bool
    power_limit_w: float | None
    start_mj: float = 0.0
    energy_j: float = 0.0
    last_t_s: float = 0.0
    last_power_w: float = 0.0


def visible_devices(value: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: None when unset (every GPU visible), else its
    entries up to the first one CUDA would reject (an empty value hides every GPU)."""
    if value is None:
        return None
    entries = []
    for entry in value.split(","):
        entry = entry.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        entries.append(entry)
    return entries


class NvmlMeter:
    """Cumulative energy in joules per GPU (domain ``gpu:<index>``) since the meter was opened.

    Indices are CUDA's, as torch numbers devices (``cuda:0`` is ``gpu:0``). Under
    CUDA_VISIBLE_DEVICES (set by Slurm, by users sharing a node) CUDA's ``cuda:0`` can be
    any physical GPU while NVML always counts all of them, so each index is mapped through
    that variable to NVML's index or UUID. Integer entries assume CUDA's order matches
    NVML's PCI order, which holds on nodes of identical GPUs or with
    CUDA_DEVICE_ORDER=PCI_BUS_ID; UUID entries are exact.
    """

    source = "nvml"

    def __init__(
        self,
        gpu_indices: Sequence[int] | None = None,
        *,
        nvml: ModuleType | Any | None = None,
        clock: Callable[[], float] = time.perf_counter,
        cuda_visible_devices: str | None = None,
    ) -> None:
        if cuda_visible_devices is None:
            cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self._visible = visible_devices(cuda_visible_devices)
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as e:
                raise MeterUnavailable(f"nvidia-ml-py (pynvml) is not installed: {e}") from e
        self._nvml = nvml
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = True  # until nvmlInit succeeds: nothing to shut down
        try:
            nvml.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded, OSError, ...
            raise MeterUnavailable(
                f"NVML could not start ({type(e).__name__}: {e}): no NVIDIA driver or GPU here"
            ) from e
        self._closed = False
        try:
            self._open(gpu_indices)
        except BaseException:
            self._shutdown()
            raise

    def _open(self, gpu_indices: Sequence[int] | None) -> None:
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
            self.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError as e:
            raise MeterUnavailable(f"NVML started but cannot list GPUs: {e}") from e
        visible = self._visible
        n_visible = count if visible is None else len(visible)
        indices = list(range(n_visible)) if gpu_indices is None else list(gpu_indices)
        if not indices:
            raise MeterUnavailable("NVML found no GPUs" if n_visible == 0 else "no GPU selected")
        bad = [i for i in indices if not 0 <= i < n_visible]
        if bad:
            seen = f"NVML sees {count} GPUs"
            if visible is not None:
                seen += f", CUDA_VISIBLE_DEVICES shows {n_visible}"
            raise MeterUnavailable(f"GPU indices {bad} do not exist ({seen})")
        self._gpus: list[_Gpu] = []
        self.nvml_ids: dict[int, str] = {}  # CUDA index -> NVML index or UUID measured
        for i in indices:
            target = str(i) if visible is None else visible[i]
            try:
                if target.isdigit():
                    handle = nvml.nvmlDeviceGetHandleByIndex(int(target))
                elif target.startswith("GPU-"):
                    handle = nvml.nvmlDeviceGetHandleByUUID(target)
                else:
                    raise MeterUnavailable(
                        f"GPU {i} is the MIG instance {target}: NVML's energy counter covers "
                        "the whole physical GPU, so it cannot be attributed to one instance"
                    )
                name = _text(nvml.nvmlDeviceGetName(handle))
            except nvml.NVMLError as e:
                raise MeterUnavailable(
                    f"NVML cannot open GPU {i} (NVML device {target}): {e}"
                ) from e
            self.nvml_ids[i] = target
            gpu = _Gpu(i, handle, name, False, False, self._power_limit_w(handle))
            try:
                gpu.start_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                gpu.uses_counter = True
            except nvml.NVMLError:  # NotSupported before Volta; any error: don't trust it
                gpu.uses_counter = False
            try:
                gpu.last_power_w = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
                gpu.has_power = True
            except nvml.NVMLError as e:
                if not gpu.uses_counter:
                    raise MeterUnavailable(
                        f"GPU {i} ({name}) reports neither an energy counter nor power: {e}"
                    ) from e
            gpu.last_t_s = self._clock()
            self._gpus.append(gpu)

    def _power_limit_w(self, handle: Any) -> float | None:
        for getter in ("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"):
            try:
                return float(getattr(self._nvml, getter)(handle)) / 1000.0
            except (self._nvml.NVMLError, AttributeError):
                continue
        return None

    @property
    def gpu_indices(self) -> list[int]:
        return [g.index for g in self._gpus]

    def read(self) -> list[DomainReading]:
        """Energy per GPU: counter difference, or power integrated since the last read."""
        nvml = self._nvml
        out = []
        with self._lock:
            for g in self._gpus:
                try:
                    power_w = (
                        float(nvml.nvmlDeviceGetPowerUsage(g.handle)) / 1000.0
                        if g.has_power
                        else None
                    )
                    if g.uses_counter:
                        mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
                        g.energy_j = (mj - g.start_mj) / 1000.0
                    else:
                        # has_power is guaranteed at open when there is no counter
                        now, p_w = self._clock(), power_w or 0.0
                        g.energy_j += 0.5 * (g.last_power_w + p_w) * max(0.0, now - g.last_t_s)
                        g.last_t_s, g.last_power_w = now, p_w
                except nvml.NVMLError as e:
                    raise MeterReadError(
                        f"NVML read of GPU {g.index} ({g.name}) failed: {e}"
                    ) from e
                out.append(DomainReading(f"gpu:{g.index}", self.source, g.energy_j, power_w))
        return out

    def gpu_stats(self) -> list[GpuStats]:
        """Utilisation and memory in use now, for logging next to the energy figures."""
        nvml = self._nvml
        out = []
        for g in self._gpus:
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(g.handle)
                mem = nvml.nvmlDeviceGetMemoryInfo(g.handle)
            except nvml.NVMLError as e:
                raise MeterReadError(f"NVML stats of GPU {g.index} ({g.name}) failed: {e}") from e
            out.append(
                GpuStats(
                    g.index, float(util.gpu), float(util.memory), int(mem.used), int(mem.total)
                )
            )
        return out

    def stats(self) -> dict[str, float]:
        """gpu_stats() flattened for the sampler, which aggregates them per phase."""
        out: dict[str, float] = {}
        for s in self.gpu_stats():
            out[f"gpu:{s.index}.util_pct"] = s.utilization_gpu_pct
            out[f"gpu:{s.index}.memory_used_mib"] = s.memory_used_bytes / 2**20
        return out

    def describe(self) -> dict[str, str]:
        info = {"nvml_driver_version": self.driver_version}
        for g in self._gpus:
            key = f"gpu:{g.index}"
            info[f"{key}.name"] = g.name
            info[f"{key}.nvml_device"] = self.nvml_ids[g.index]
            if g.power_limit_w is not None:
                info[f"{key}.power_limit_w"] = f"{g.power_limit_w:g}"
            info[f"{key}.energy_method"] = (
                "total_energy_counter" if g.uses_counter else "power_integration"
            )
        return info

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # best effort; nothing useful to report
            self._nvml.nvmlShutdown()

    def close(self) -> None:
        """Release NVML (it is reference-counted, so other users in the process keep theirs)."""
        self._shutdown()
