"""NVIDIA GPU energy through NVML (nvidia-ml-py, imported as ``pynvml``).

Volta and newer GPUs keep a cumulative energy counter (millijoules since driver load). It
only changes at refreshes (every ~100 ms on an H200, and the same for every NVML reading),
so a boundary read is late by up to one refresh: each counter is watched by a
``RefreshTimeline`` (reads just before and after each refresh, ~20 cheap calls a second),
and ``resolve`` interpolates a boundary between the refreshes on either side of it.

GPUs without the counter integrate power with the trapezoid rule: the instant-power field
(``NVML_FI_DEV_POWER_INSTANT``) where NVML has it, else ``GetPowerUsage``, which on recent
GPUs is a trailing 1 s mean (it read 8-11% low over loaded stretches of the H200 recording);
``describe()`` says which. The meter only reads: it never changes clocks or power limits.
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

from sweeper.energy.refresh import BoundaryEnergy, RefreshTimeline
from sweeper.energy.types import DomainReading, MeterReadError
from sweeper.errors import MeterUnavailable

NVML_FI_DEV_POWER_INSTANT = 186  # pynvml's constant, for bindings that lack it
# Short bursts draw more than the power limit before capping acts: the H200 recording shows
# 778 W over a whole 100 ms refresh on a 700 W card. Above limit x this is not physical.
TRANSIENT_HEADROOM = 1.25
DEFAULT_REFRESH_S = 0.1  # assumed only for the uncertainty of a boundary never interpolated
# Over the recorded H200 stretches, the instant field missed the counter by up to 20% (it
# is a point sample, and aliases with 30 ms bursts): its relative uncertainty.
INTEGRATION_UNCERTAINTY = {"instant_power_integration": 0.2}
# GetPowerUsage is a trailing 1 s mean: at a boundary it lags the load by about half that.
POWER_USAGE_LAG_S = 0.5
OTHER_PROCESSES = ".other_processes"  # stats key suffix: other compute processes on a GPU


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
    other_processes: int | None = None  # compute processes besides this one (None: unknown)


@dataclass
class _Gpu:
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
    """NVML's index or UUID of CUDA's GPU ``index`` (see ``NvmlMeter``)."""
    return str(index) if visible is None else visible[index]


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
            target = nvml_target(i, visible)
            if is_mig(target):
                raise MeterUnavailable(
                    f"GPU {i} is the MIG instance {target}: NVML's energy counter covers "
                    "the whole physical GPU, so it cannot be attributed to one instance"
                )
            try:
                handle = open_handle(nvml, target)
                name = _text(nvml.nvmlDeviceGetName(handle))
            except nvml.NVMLError as e:
                raise MeterUnavailable(
                    f"NVML cannot open GPU {i} (NVML device {target}): {e}"
                ) from e
            self.nvml_ids[i] = target
            gpu = _Gpu(i, handle, name, False, False, self._power_limit_w(handle),
                       self._max_power_limit_w(handle))
            try:
                gpu.start_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                gpu.uses_counter = True
                gpu.timeline = RefreshTimeline()
            except nvml.NVMLError:  # NotSupported before Volta; any error: don't trust it
                gpu.uses_counter = False
            power_error: Exception | None = None
            try:
                gpu.last_power_w = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
                gpu.has_power = True
            except nvml.NVMLError as e:
                power_error = e
            instant_w = self._instant_power_w(handle)
            if instant_w is not None:
                gpu.has_instant = True
                if not gpu.uses_counter:
                    gpu.last_power_w = instant_w
            elif not gpu.uses_counter and power_error is not None:
                    raise MeterUnavailable(
                        f"GPU {i} ({name}) reports neither an energy counter nor power: "
                        f"{power_error}"
                    ) from power_error
            gpu.last_t_s = self._clock()
            self._gpus.append(gpu)

    def _power_limit_w(self, handle: Any) -> float | None:
        for getter in ("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"):
            try:
                return float(getattr(self._nvml, getter)(handle)) / 1000.0
            except (self._nvml.NVMLError, AttributeError):
                continue
        return None

    def _max_power_limit_w(self, handle: Any) -> float | None:
        """The highest power limit the GPU can be set to (its board maximum), or the limit."""
        try:
            constraints = self._nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
            return float(constraints[1]) / 1000.0
        except (self._nvml.NVMLError, AttributeError, IndexError, TypeError):
            return None

    def _instant_power_w(self, handle: Any) -> float | None:
        """The instant-power field in watts, or None where this GPU or binding lacks it."""
        nvml = self._nvml
        field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
        try:
            (value,) = nvml.nvmlDeviceGetFieldValues(handle, [field])
        except (nvml.NVMLError, AttributeError, ValueError, TypeError):
            return None
        if int(value.nvmlReturn) != 0:
            return None
        return float(value.value.uiVal) / 1000.0

    @property
    def gpu_indices(self) -> list[int]:
        return [g.index for g in self._gpus]

    def _read_counter(self, g: _Gpu) -> None:
        """Read the counter and tell its timeline when the call began and returned."""
        t0 = self._clock()
        mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
        g.energy_j = (mj - g.start_mj) / 1000.0
        assert g.timeline is not None
        g.timeline.observe(t0, g.energy_j, self._clock())

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
                        self._read_counter(g)
                        if g.has_instant and g.timeline is not None:
                            instant_w = self._instant_power_w(g.handle)
                            if instant_w is not None:
                                g.timeline.observe_power(self._clock(), instant_w)
                    else:
                        if g.has_instant:
                            instant_w = self._instant_power_w(g.handle)
                            if instant_w is None:
                                raise nvml.NVMLError("the instant-power field stopped reading")
                            power_w = instant_w
                        # has_power or has_instant is guaranteed at open without a counter
                        now, p_w = self._clock(), power_w or 0.0
                        g.energy_j += 0.5 * (g.last_power_w + p_w) * max(0.0, now - g.last_t_s)
                        g.last_t_s, g.last_power_w = now, p_w
                except nvml.NVMLError as e:
                    raise MeterReadError(
                        f"NVML read of GPU {g.index} ({g.name}) failed: {e}"
                    ) from e
                out.append(DomainReading(f"gpu:{g.index}", self.source, g.energy_j, power_w))
        return out

    # ---------------------------------------------------- refresh-aware boundaries

    def watch(self) -> None:
        """Read only the counters, to timestamp refreshes (the sampler calls it when
        ``next_read_s`` says). Failures are left to the next full read to report."""
        with self._lock:
            for g in self._gpus:
                if g.timeline is not None:
                    with contextlib.suppress(self._nvml.NVMLError):
                        self._read_counter(g)

    def next_read_s(self, now_s: float) -> float | None:
        """When a counter read would next help timestamp a refresh, or None."""
        times = [
            t for g in self._gpus if g.timeline is not None
            and (t := g.timeline.next_read_s(now_s)) is not None
        ]
        return min(times) if times else None

    def settle_s(self) -> float:
        """How long after a boundary the two refreshes that settle it are seen (with room
        for a late read on a busy machine)."""
        periods = [g.timeline.period_s for g in self._gpus if g.timeline and g.timeline.period_s]
        return 3.0 * max(periods) if periods else 0.0

    def mark_boundary(self, t_s: float, edge: str) -> None:
        """A phase began or ended at clock time ``t_s``: within a refresh, the phase's work
        lies on its side of the boundary (see ``RefreshTimeline.mark``)."""
        with self._lock:
            for g in self._gpus:
                if g.timeline is not None:
                    g.timeline.mark(t_s, edge)

    def resolve(self, domain: str, t_s: float, final: bool = False) -> BoundaryEnergy | None:
        """Energy of ``domain`` at clock time ``t_s``, interpolated between refreshes; None
        while those refreshes are not seen yet, or for GPUs that integrate power."""
        g = self._by_domain(domain)
        if g is None or g.timeline is None:
            return None
        with self._lock:
            return g.timeline.energy_at(t_s, final=final)

    def boundary_uncertainty_j(self, domain: str, power_w: float) -> float:
        """Uncertainty of a boundary taken from a plain read: the counter's value, and the
        instant field, are those of the last refresh, up to one refresh old; GetPowerUsage
        lags the load by about half its 1 s window."""
        g = self._by_domain(domain)
        if g is None:
            return 0.0
        if g.method == "power_usage_integration":
            return POWER_USAGE_LAG_S * abs(power_w)
        period = (g.timeline.period_s if g.timeline else None) or DEFAULT_REFRESH_S
        return period * abs(power_w)

    def relative_uncertainty(self, domain: str) -> float:
        """Share of a phase's energy that power integration may miss (0 for the counter)."""
        g = self._by_domain(domain)
        return 0.0 if g is None else INTEGRATION_UNCERTAINTY.get(g.method, 0.0)

    def max_power_w(self) -> dict[str, tuple[float, str]]:
        """The most each GPU can draw, and why: above it a figure is not a measurement."""
        out = {}
        for g in self._gpus:
            limit = g.max_power_limit_w or g.power_limit_w
            if limit:
                kind = "maximum" if g.max_power_limit_w else "enforced"
                out[f"gpu:{g.index}"] = (
                    limit * TRANSIENT_HEADROOM,
                    f"{limit:g} W {kind} power limit x {TRANSIENT_HEADROOM:g} for short bursts",
                )
        return out

    def _by_domain(self, domain: str) -> _Gpu | None:
        for g in self._gpus:
            if f"gpu:{g.index}" == domain:
                return g
        return None

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
                    g.index, float(util.gpu), float(util.memory), int(mem.used), int(mem.total),
                    self._other_processes(g),
                )
            )
        return out

    def _other_processes(self, g: _Gpu) -> int | None:
        """Compute processes on the GPU besides this one: NVML measures the whole GPU, so a
        shared GPU's energy includes theirs. None when NVML cannot list them."""
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(g.handle)
        except (self._nvml.NVMLError, AttributeError):
            return None
        # One listed process is this one: by its pid, or, in a container where NVML lists
        # host pids, whichever it is.
        return max(len({int(p.pid) for p in procs}) - 1, 0)

    def stats(self) -> dict[str, float]:
        """gpu_stats() flattened for the sampler, which aggregates them per phase."""
        out: dict[str, float] = {}
        for s in self.gpu_stats():
            out[f"gpu:{s.index}.util_pct"] = s.utilization_gpu_pct
            out[f"gpu:{s.index}.memory_used_mib"] = s.memory_used_bytes / 2**20
            if s.other_processes is not None:  # the sampler keeps a phase's peak
                out[f"gpu:{s.index}{OTHER_PROCESSES}"] = float(s.other_processes)
        return out

    def describe(self) -> dict[str, str]:
        info = {"nvml_driver_version": self.driver_version}
        for g in self._gpus:
            key = f"gpu:{g.index}"
            info[f"{key}.name"] = g.name
            info[f"{key}.nvml_device"] = self.nvml_ids[g.index]
            if g.power_limit_w is not None:
                info[f"{key}.power_limit_w"] = f"{g.power_limit_w:g}"
            if g.max_power_limit_w is not None:
                info[f"{key}.max_power_limit_w"] = f"{g.max_power_limit_w:g}"
            info[f"{key}.energy_method"] = g.method
            if g.timeline is not None and g.timeline.period_s is not None:
                info[f"{key}.refresh_period_ms"] = f"{1000 * g.timeline.period_s:.1f}"
                marks = g.timeline.marks
                if marks:  # phases were split where their work was: with what decay
                    learned = marks.tails_learned
                    info[f"{key}.decay_ms"] = f"{1000 * marks.tail_s:.1f} " + (
                        f"(learned from {learned} phase end(s))" if learned
                        else "(an H200's, none learned here)")
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
