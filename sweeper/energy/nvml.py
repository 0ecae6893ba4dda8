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

Which devices and what each reports: sweeper.energy.nvml_devices; reading one GPU:
sweeper.energy.nvml_reading; this module is the meter that the energy/meter group's
``nvml.yaml`` names.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from sweeper.energy.nvml_devices import (
    NVML_FI_DEV_POWER_INSTANT,
    Gpu,
    is_mig,
    nvml_target,
    open_gpus,
    open_handle,
    visible_devices,
)
from sweeper.energy.nvml_reading import (
    OTHER_PROCESSES,
    GpuStats,
    flat_stats,
    gpu_stats,
    read_counter,
    read_energy,
    read_field,
)
from sweeper.energy.refresh import BoundaryEnergy
from sweeper.energy.types import DomainReading, MeterReadError
from sweeper.errors import MeterUnavailable

__all__ = [
    "NVML_FI_DEV_POWER_INSTANT", "OTHER_PROCESSES", "GpuStats", "NvmlMeter", "is_mig",
    "nvml_target", "open_handle", "visible_devices",
]

# Short bursts draw more than the power limit before capping acts: the H200 recording shows
# 778 W over a whole 100 ms refresh on a 700 W card. Above limit x this is not physical.
TRANSIENT_HEADROOM = 1.25
DEFAULT_REFRESH_S = 0.1  # assumed only for the uncertainty of a boundary never interpolated
# Over the recorded H200 stretches, the instant field missed the counter by up to 20% (it
# is a point sample, and aliases with 30 ms bursts): its relative uncertainty.
INTEGRATION_UNCERTAINTY = {"instant_power_integration": 0.2}
# GetPowerUsage is a trailing 1 s mean: at a boundary it lags the load by about half that.
POWER_USAGE_LAG_S = 0.5


class NvmlMeter:
    """Cumulative energy in joules per GPU (domain ``gpu:<index>``) since the meter was opened.

    Indices are CUDA's, as torch numbers devices (``cuda:0`` is ``gpu:0``), mapped through
    CUDA_VISIBLE_DEVICES to the physical GPU NVML measures (sweeper.energy.nvml_devices).
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
        visible = visible_devices(cuda_visible_devices)
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
            devices = open_gpus(nvml, gpu_indices, visible, clock)
        except BaseException:
            self._shutdown()
            raise
        self.driver_version = devices.driver_version
        self._gpus: list[Gpu] = devices.gpus
        self.nvml_ids: dict[int, str] = devices.nvml_ids  # CUDA index -> NVML index or UUID
        ceilings = self.max_power_w()
        for g in self._gpus:  # a split that would put more there has its levels wrong
            if g.timeline is not None and g.domain in ceilings:
                g.timeline.max_power_w = ceilings[g.domain][0]

    @property
    def gpu_indices(self) -> list[int]:
        return [g.index for g in self._gpus]

    @property
    def covers(self) -> str:
        """What it measures, for the meter selection's notes."""
        return f"GPUs {self.gpu_indices}"

    def read(self) -> list[DomainReading]:
        """Energy per GPU: counter difference, or power integrated since the last read."""
        out = []
        with self._lock:
            for g in self._gpus:
                try:
                    power_w = read_energy(self._nvml, g, self._clock)
                except self._nvml.NVMLError as e:
                    raise MeterReadError(
                        f"NVML read of GPU {g.index} ({g.name}) failed: {e}"
                    ) from e
                out.append(DomainReading(g.domain, self.source, g.energy_j, power_w))
        return out

    # ---------------------------------------------------- refresh-aware boundaries

    def watch(self) -> None:
        """Read only the counters, to timestamp refreshes (the sampler calls it when
        ``next_read_s`` says), and the instant field while its pace is learned. Failures
        are left to the next full read to report."""
        with self._lock:
            now = self._clock()
            for g in self._gpus:
                if g.timeline is None:
                    continue
                field_s = self._field_read_s(g)
                field_due = field_s is not None and field_s <= now
                counter_due = g.timeline.next_read_s(now)
                # a read due for the field alone leaves the counter's reads as they were
                if not field_due or counter_due is None or counter_due <= now:
                    with contextlib.suppress(self._nvml.NVMLError):
                        read_counter(self._nvml, g, self._clock)
                if field_due:
                    read_field(self._nvml, g, self._clock)

    @staticmethod
    def _field_read_s(g: Gpu) -> float | None:
        """When ``g``'s instant field should next be read to learn its pace, or None."""
        return g.timeline.next_field_read_s() if g.has_instant and g.timeline else None

    def next_read_s(self, now_s: float) -> float | None:
        """When a counter read would next help timestamp a refresh, or a field read time
        the field's (while its pace is learned), or None."""
        times = [
            t for g in self._gpus if g.timeline is not None
            for t in (g.timeline.next_read_s(now_s), self._field_read_s(g))
            if t is not None
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

    def boundary_uncertainty_j(
        self, domain: str, power_w: float, t_s: float | None = None
    ) -> float:
        """Uncertainty of a boundary taken from a plain read: the counter's value, and the
        instant field, are those of the last refresh, up to one refresh old (at most the
        energy of the refresh interval around the boundary at ``t_s``, and until that is
        seen a refresh at the most the GPU can draw: a phase no refresh fell inside reads
        0 W of its own); GetPowerUsage lags the load by about half its 1 s window."""
        g = self._by_domain(domain)
        if g is None:
            return 0.0
        if g.method == "power_usage_integration":
            return POWER_USAGE_LAG_S * abs(power_w)
        period = (g.timeline.period_s if g.timeline else None) or DEFAULT_REFRESH_S
        if g.timeline is None or t_s is None:
            return period * abs(power_w)
        behind_j = g.timeline.behind_j(t_s)
        if behind_j is None:  # the refresh after it not seen yet: as much as the GPU can draw
            behind_j = period * (g.timeline.max_power_w or abs(power_w))
        return max(period * abs(power_w), behind_j)

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
                out[g.domain] = (
                    limit * TRANSIENT_HEADROOM,
                    f"{limit:g} W {kind} power limit x {TRANSIENT_HEADROOM:g} for short bursts",
                )
        return out

    def _by_domain(self, domain: str) -> Gpu | None:
        return next((g for g in self._gpus if g.domain == domain), None)

    def gpu_stats(self) -> list[GpuStats]:
        """Utilisation and memory in use now, for logging next to the energy figures."""
        return [gpu_stats(self._nvml, g) for g in self._gpus]

    def stats(self) -> dict[str, float]:
        """gpu_stats() flattened for the sampler, which aggregates them per phase."""
        return flat_stats(self.gpu_stats())

    def describe(self) -> dict[str, str]:
        info = {"nvml_driver_version": self.driver_version}
        for g in self._gpus:
            key = g.domain
            info[f"{key}.name"] = g.name
            info[f"{key}.nvml_device"] = self.nvml_ids[g.index]
            if g.power_limit_w is not None:
                info[f"{key}.power_limit_w"] = f"{g.power_limit_w:g}"
            if g.max_power_limit_w is not None:
                info[f"{key}.max_power_limit_w"] = f"{g.max_power_limit_w:g}"
            info[f"{key}.energy_method"] = g.method
            if g.timeline is not None and g.timeline.period_s is not None:
                info[f"{key}.refresh_period_ms"] = f"{1000 * g.timeline.period_s:.1f}"
                if g.timeline.field_period_s is not None:  # the instant field's own pace
                    info[f"{key}.field_period_ms"] = f"{1000 * g.timeline.field_period_s:.1f}"
                marks = g.timeline.marks
                if marks:  # phases were split where their work was: with what decay
                    learned = marks.tails_learned
                    info[f"{key}.decay_ms"] = f"{1000 * marks.tail_s:.1f} " + (
                        f"(learned from {learned} phase end(s))" if learned
                        else "(an H200's, none learned here)")
                    launched = marks.launches_learned
                    info[f"{key}.launch_ms"] = f"{1000 * marks.launch()[0]:.1f} " + (
                        f"(learned from {launched} phase start(s))" if launched
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
