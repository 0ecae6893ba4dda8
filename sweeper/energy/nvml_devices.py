"""Which NVML devices a run's GPUs are, and what each one can report.

Indices are CUDA's, as torch numbers devices (``cuda:0`` is ``gpu:0``). Under
CUDA_VISIBLE_DEVICES (set by Slurm, by users sharing a node) CUDA's ``cuda:0`` can be any
physical GPU while NVML always counts all of them, so each index is mapped through that
variable to NVML's index or UUID. Integer entries assume CUDA's order matches NVML's PCI
order, which holds on nodes of identical GPUs or with CUDA_DEVICE_ORDER=PCI_BUS_ID; UUID
entries are exact. Opening a GPU probes once what it reports: the energy counter (Volta and
newer), GetPowerUsage, the instant-power field, and its power limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sweeper.energy.refresh import RefreshTimeline
from sweeper.errors import MeterUnavailable

NVML_FI_DEV_POWER_INSTANT = 186  # pynvml's constant, for bindings that lack it


def text(value: Any) -> str:
    """NVML strings are bytes in old bindings and str in new ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class Gpu:
    """One measured GPU: what it reports, and its running energy."""

    index: int
    handle: Any
    name: str
    uses_counter: bool
    has_power: bool
    power_limit_w: float | None
    max_power_limit_w: float | None = None
    has_instant: bool = False
    start_mj: float = 0.0
    energy_j: float = 0.0
    last_t_s: float = 0.0
    last_power_w: float = 0.0
    timeline: RefreshTimeline | None = None

    @property
    def domain(self) -> str:
        return f"gpu:{self.index}"

    @property
    def method(self) -> str:
        if self.uses_counter:
            return "total_energy_counter"
        return "instant_power_integration" if self.has_instant else "power_usage_integration"


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


def is_mig(target: str) -> bool:
    """A CUDA_VISIBLE_DEVICES entry naming a MIG instance, not a whole GPU."""
    return not (target.isdigit() or target.startswith("GPU-"))


def open_handle(nvml: ModuleType | Any, target: str) -> Any:
    """NVML's handle of a whole GPU named by its NVML index or UUID (``nvml_target``)."""
    if target.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(target))
    return nvml.nvmlDeviceGetHandleByUUID(target)


def nvml_target(index: int, visible: list[str] | None) -> str:
    """NVML's index or UUID of CUDA's GPU ``index`` (see the module docstring)."""
    return str(index) if visible is None else visible[index]


def power_limit_w(nvml: ModuleType | Any, handle: Any) -> float | None:
    """The enforced power limit in watts (or the management limit), None if unreadable."""
    for getter in ("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"):
        try:
            return float(getattr(nvml, getter)(handle)) / 1000.0
        except (nvml.NVMLError, AttributeError):
            continue
    return None


def max_power_limit_w(nvml: ModuleType | Any, handle: Any) -> float | None:
    """The highest power limit the GPU can be set to (its board maximum), or None."""
    try:
        constraints = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        return float(constraints[1]) / 1000.0
    except (nvml.NVMLError, AttributeError, IndexError, TypeError):
        return None


def instant_power_w(nvml: ModuleType | Any, handle: Any) -> float | None:
    """The instant-power field in watts, or None where this GPU or binding lacks it."""
    field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
    try:
        (value,) = nvml.nvmlDeviceGetFieldValues(handle, [field])
    except (nvml.NVMLError, AttributeError, ValueError, TypeError):
        return None
    if int(value.nvmlReturn) != 0:
        return None
    return float(value.value.uiVal) / 1000.0


@dataclass
class Devices:
    """The GPUs a meter measures, as opened by ``open_gpus``."""

    driver_version: str
    gpus: list[Gpu]
    nvml_ids: dict[int, str]  # CUDA index -> NVML index or UUID measured


def open_gpus(
    nvml: ModuleType | Any,
    gpu_indices: Sequence[int] | None,
    visible: list[str] | None,
    clock: Callable[[], float],
) -> Devices:
    """Open CUDA's GPUs ``gpu_indices`` (None: every visible one) on a started NVML and probe
    what each reports; MeterUnavailable says which GPU cannot be measured and why."""
    try:
        count = int(nvml.nvmlDeviceGetCount())
        driver_version = text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError as e:
        raise MeterUnavailable(f"NVML started but cannot list GPUs: {e}") from e
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
    devices = Devices(driver_version, [], {})
    for i in indices:
        target = nvml_target(i, visible)
        if is_mig(target):
            raise MeterUnavailable(
                f"GPU {i} is the MIG instance {target}: NVML's energy counter covers "
                "the whole physical GPU, so it cannot be attributed to one instance"
            )
        try:
            handle = open_handle(nvml, target)
            name = text(nvml.nvmlDeviceGetName(handle))
        except nvml.NVMLError as e:
            raise MeterUnavailable(f"NVML cannot open GPU {i} (NVML device {target}): {e}") from e
        devices.nvml_ids[i] = target
        devices.gpus.append(_probe(nvml, Gpu(
            i, handle, name, False, False, power_limit_w(nvml, handle),
            max_power_limit_w(nvml, handle),
        ), clock))
    return devices


def _probe(nvml: ModuleType | Any, gpu: Gpu, clock: Callable[[], float]) -> Gpu:
    """Find how ``gpu``'s energy can be measured: its counter, else integrated power."""
    try:
        gpu.start_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        gpu.uses_counter = True
        gpu.timeline = RefreshTimeline()
    except nvml.NVMLError:  # NotSupported before Volta; any error: don't trust it
        gpu.uses_counter = False
    power_error: Exception | None = None
    try:
        gpu.last_power_w = float(nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0
        gpu.has_power = True
    except nvml.NVMLError as e:
        power_error = e
    instant_w = instant_power_w(nvml, gpu.handle)
    if instant_w is not None:
        gpu.has_instant = True
        if not gpu.uses_counter:
            gpu.last_power_w = instant_w
    elif not gpu.uses_counter and power_error is not None:
        raise MeterUnavailable(
            f"GPU {gpu.index} ({gpu.name}) reports neither an energy counter nor power: "
            f"{power_error}"
        ) from power_error
    gpu.last_t_s = clock()
    return gpu
