"""Labelled CPU and memory energy estimate for machines with no readable meter (VMs, CI).

Model (CodeCarbon's "process" tracking convention, made cumulative so it is exact at any read):

* CPU: ``E_cpu += TDP * cpu_seconds_delta / n_logical_cores`` where ``cpu_seconds`` is the
  user+system CPU time of this process and its descendants. Equivalently, power is TDP times
  the share of the machine's logical cores the process tree kept busy. The TDP comes from
  CodeCarbon's bundled ``cpu_power.csv`` matched on the CPU model name; when the model is not
  in the table we use CodeCarbon's own generic value, 85 W (``POWER_CONSTANT`` in
  ``codecarbon.external.hardware``). On a VM the TDP is that of the host's whole chip, so
  the estimate is high for a few vCPUs; pass ``cpu_tdp_w`` to correct it.
* No idle baseline: the estimate attributes to the run only what its own processes use. On
  shared VMs and CI the idle power belongs to the host, and a baseline would make the figure
  depend on wall time rather than on the work done. A sleeping phase therefore costs ~0 CPU J.
* Memory: CodeCarbon's pre-v3 convention of 3 W per 8 GB (0.375 W/GiB) applied to the RSS of
  the process tree, integrated over time with the trapezoid rule. RSS is summed per process,
  so pages shared with fork()ed workers are counted more than once (an over-estimate).

* Causality: a descendant is found by a /proc scan at most every ``children_refresh_s``, and
  one never found (it lived between scans) counts through its parent's reaped-children
  totals when it exits, so CPU time can surface in one read faster than the machine's cores
  could have run it. Each read credits at most every core busy since the last read and
  carries the rest to later reads, counting it meanwhile in the boundary uncertainty: the
  total is kept, and no phase is given more than the TDP (a lump into a short phase was
  flagged as an impossible figure under load).
* Contention: CPU time is not the work done when threads wait on a busy machine. torch's
  OpenMP threads spin while a sibling is descheduled, and the spinning counts: on a loaded
  2-core VM 100 training steps took 36 s of CPU spinning against 2.5 s passive
  (benchmarks/estimate_contention.py). ``python -m sweeper`` therefore lets them spin only
  briefly before sleeping (GOMP_SPINCOUNT=1000, sweeper._threads), and every run records
  how busy the machine was (sweeper.energy.contention) so such runs are flagged rather
  than trusted.

The figures are estimates, never measurements: every reading has source ``"estimate"``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import psutil

from sweeper.energy.cpu_name import cpu_model_name
from sweeper.energy.process_tree import ProcessTree
from sweeper.energy.tdp import TdpLookup, lookup_cpu_tdp_w
from sweeper.energy.types import DomainReading, MeterReadError

MEMORY_W_PER_GIB = 3.0 / 8.0  # CodeCarbon pre-v3 RAM heuristic: 3 W per 8 GB of DDR3/DDR4
_GIB = 1024**3


class EstimateMeter:
    """CPU and memory energy of this process tree, estimated from CPU time and RSS."""

    source = "estimate"

    def __init__(
        self,
        cpu_tdp_w: float | None = None,
        *,
        pid: int | None = None,
        include_children: bool = True,
        memory_w_per_gib: float = MEMORY_W_PER_GIB,
        children_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.cpu_model = cpu_model_name()
        if cpu_tdp_w is not None:
            if cpu_tdp_w <= 0:
                raise ValueError(f"cpu_tdp_w must be positive, got {cpu_tdp_w}")
            self.tdp = TdpLookup(float(cpu_tdp_w), None, "override (cpu_tdp_w)")
        else:
            self.tdp = lookup_cpu_tdp_w(self.cpu_model)
        self.n_cores = psutil.cpu_count(logical=True) or 1
        self.memory_w_per_gib = memory_w_per_gib
        self.include_children = include_children
        self.children_refresh_s = children_refresh_s
        self._clock = clock
        self._proc = psutil.Process(pid)
        self._descendants = ProcessTree(self._proc, clock, children_refresh_s)
        self._lock = threading.Lock()
        self._cpu_energy_j = 0.0
        self._deferred_cpu_s = 0.0  # surfaced faster than the cores could run it
        self._mem_energy_j = 0.0
        self._last_t = clock()
        self._last_cpu_s = self._cpu_seconds()
        self._last_mem_w = self._memory_power_w()

    @property
    def cpu_tdp_w(self) -> float:
        return self.tdp.tdp_w

    @property
    def covers(self) -> str:
        """What it estimates and from which TDP, for the meter selection's notes."""
        return f"cpu+memory, TDP {self.tdp.tdp_w:g} W from {self.tdp.source}"

    def _tree(self) -> list[psutil.Process]:
        """This process and its descendants; rediscovering children is a /proc scan, so rarely."""
        if not self.include_children:
            return [self._proc]
        return [self._proc, *self._descendants.children()]

    def _cpu_seconds(self) -> float:
        """User+system seconds of the tree; reaped children count via their reaper's totals."""
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
            except psutil.Error:
                if p is self._proc:
                    raise
                self._descendants.forget(p.pid)
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def _memory_power_w(self) -> float:
        rss_b = 0
        for p in self._tree():
            try:
                rss_b += p.memory_info().rss
            except psutil.Error:
                if p is self._proc:
                    raise
        return self.memory_w_per_gib * rss_b / _GIB

    def read(self) -> list[DomainReading]:
        """Fold the CPU time and RSS since the last read into the cumulative estimates."""
        with self._lock:
            try:
                now = self._clock()
                cpu_s = self._cpu_seconds()
                mem_w = self._memory_power_w()
            except psutil.Error as e:
                raise MeterReadError(
                    f"estimate meter cannot read process {self._proc.pid}: {e}"
                ) from e
            # Exited-but-unreaped children drop out briefly; never let the total go backwards.
            if cpu_s > self._last_cpu_s:
                self._deferred_cpu_s += cpu_s - self._last_cpu_s
                self._last_cpu_s = cpu_s
            dt_s = max(0.0, now - self._last_t)
            credit_s = min(self._deferred_cpu_s, self.n_cores * dt_s)  # every core busy at most
            self._deferred_cpu_s -= credit_s
            self._cpu_energy_j += self.tdp.tdp_w * credit_s / self.n_cores
            self._mem_energy_j += 0.5 * (self._last_mem_w + mem_w) * dt_s
            self._last_t, self._last_mem_w = now, mem_w
            return [
                DomainReading("cpu", self.source, self._cpu_energy_j, None),
                DomainReading("memory", self.source, self._mem_energy_j, mem_w),
            ]

    def boundary_uncertainty_j(
        self, domain: str, power_w: float, t_s: float | None = None
    ) -> float:
        """CPU time is counted in clock ticks (10 ms at USER_HZ=100) per process, so each
        boundary may miss up to one tick of each process in the tree; CPU time not yet
        credited (it surfaced faster than the cores could run it) belongs to earlier reads."""
        if domain != "cpu":
            return 0.0
        tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        with self._lock:
            deferred_s = self._deferred_cpu_s
        ticks_s = tick_s * (1 + self._descendants.known())
        return self.tdp.tdp_w * (ticks_s + deferred_s) / self.n_cores

    def max_power_w(self) -> dict[str, tuple[float, str]]:
        """The model gives at most the TDP (every core busy); more is a counting artefact."""
        return {"cpu": (self.tdp.tdp_w, f"{self.tdp.tdp_w:g} W TDP of the estimate model")}

    def describe(self) -> dict[str, str]:
        return {
            "cpu_model": self.cpu_model or "unknown",
            "cpu_tdp_w": f"{self.tdp.tdp_w:g}",
            "cpu_tdp_source": self.tdp.source,
            "logical_cores": str(self.n_cores),
            "estimate_model": (
                "cpu: TDP x process-tree CPU share (no idle baseline); "
                f"memory: {self.memory_w_per_gib:g} W/GiB of process-tree RSS"
            ),
        }

    def close(self) -> None:
        """Nothing to release."""
