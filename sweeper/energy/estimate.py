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

The figures are estimates, never measurements: every reading has source ``"estimate"``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import psutil

from sweeper.energy.types import DomainReading, MeterReadError

CODECARBON_DEFAULT_TDP_W = 85.0  # codecarbon.external.hardware.POWER_CONSTANT (v2.x-3.x)
MEMORY_W_PER_GIB = 3.0 / 8.0  # CodeCarbon pre-v3 RAM heuristic: 3 W per 8 GB of DDR3/DDR4
_GIB = 1024**3


def codecarbon_data_path(*parts: str) -> Path:
    """Path of a file bundled in CodeCarbon's ``data`` folder, found without importing it."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the codecarbon package is not installed")
    return Path(next(iter(spec.submodule_search_locations)), "data", *parts)


@lru_cache(maxsize=1)
def cpu_model_name() -> str | None:
    """CPU brand string, from /proc/cpuinfo (fast) or py-cpuinfo (portable, ~1 s)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    try:
        import cpuinfo

        brand = str(cpuinfo.get_cpu_info().get("brand_raw") or "").strip()
        return brand or None
    except Exception:  # py-cpuinfo is best-effort on exotic platforms
        return None


_NOISE = [
    r"\(r\)",
    r"\(tm\)",
    r"@\s*\d+(?:\.\d+)?\s*ghz",
    r"\b\d+-core\b",
    r"\bprocessor\b",
    r"\bcpu\b",
    r"\bwith radeon .*$",
]


def normalize_cpu_name(name: str) -> str:
    """Lower-case model name without trademarks, clock speed, core count and filler words."""
    s = name.lower()
    for pattern in _NOISE:
        s = re.sub(pattern, " ", s)
    return " ".join(s.split())


@lru_cache(maxsize=1)
def _tdp_table() -> tuple[tuple[str, frozenset[str], str, float], ...]:
    """(normalized name, its tokens, table name, TDP W) for every row of CodeCarbon's table."""
    rows = []
    with open(codecarbon_data_path("hardware", "cpu_power.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                tdp_w = float(row["TDP"])
            except (KeyError, TypeError, ValueError):
                continue
            norm = normalize_cpu_name(row["Name"])
            rows.append((norm, frozenset(norm.split()), row["Name"], tdp_w))
    return tuple(rows)


@dataclass(frozen=True)
class TdpLookup:
    """A CPU's rated power and where the number came from."""

    tdp_w: float
    matched_name: str | None
    source: str


def lookup_cpu_tdp_w(model: str | None) -> TdpLookup:
    """Match a CPU model to CodeCarbon's TDP table, or fall back to CodeCarbon's 85 W default.

    Exact match on the normalized name first; otherwise the most specific table entry whose
    words (including a model number) all appear in the model name, if it is unambiguous.
    """
    default = TdpLookup(
        CODECARBON_DEFAULT_TDP_W,
        None,
        f"default {CODECARBON_DEFAULT_TDP_W:g} W (CodeCarbon POWER_CONSTANT; "
        f"{model or 'unknown CPU'} not in cpu_power.csv)",
    )
    if not model:
        return default
    norm = normalize_cpu_name(model)
    tokens = frozenset(norm.split())
    table = _tdp_table()
    for name_norm, _, name, tdp_w in table:
        if name_norm == norm:
            return TdpLookup(tdp_w, name, f"codecarbon cpu_power.csv: {name}")
    candidates = [
        (len(toks), name, tdp_w)
        for _, toks, name, tdp_w in table
        if toks and toks <= tokens and any(ch.isdigit() for t in toks for ch in t)
    ]
    if not candidates:
        return default
    best = max(c[0] for c in candidates)
    top = [c for c in candidates if c[0] == best]
    if len({c[2] for c in top}) > 1:
        return default
    return TdpLookup(top[0][2], top[0][1], f"codecarbon cpu_power.csv: {top[0][1]}")


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
        self._children: dict[int, psutil.Process] = {}
        self._children_at = float("-inf")
        self._lock = threading.Lock()
        self._cpu_energy_j = 0.0
        self._mem_energy_j = 0.0
        self._last_t = clock()
        self._last_cpu_s = self._cpu_seconds()
        self._last_mem_w = self._memory_power_w()

    @property
    def cpu_tdp_w(self) -> float:
        return self.tdp.tdp_w

    def _tree(self) -> list[psutil.Process]:
        """This process and its descendants; rediscovering children is a /proc scan, so rarely."""
        if not self.include_children:
            return [self._proc]
        now = self._clock()
        if now - self._children_at >= self.children_refresh_s:
            self._children_at = now
            try:
                found = self._proc.children(recursive=True)
            except psutil.Error:
                found = []
            self._children = {c.pid: self._children.get(c.pid, c) for c in found}
        return [self._proc, *self._children.values()]

    def _cpu_seconds(self) -> float:
        """User+system seconds of the tree; reaped children count via their reaper's totals."""
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
            except psutil.Error:
                if p is self._proc:
                    raise
                self._children.pop(p.pid, None)
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
                self._cpu_energy_j += self.tdp.tdp_w * (cpu_s - self._last_cpu_s) / self.n_cores
                self._last_cpu_s = cpu_s
            dt_s = max(0.0, now - self._last_t)
            self._mem_energy_j += 0.5 * (self._last_mem_w + mem_w) * dt_s
            self._last_t, self._last_mem_w = now, mem_w
            return [
                DomainReading("cpu", self.source, self._cpu_energy_j, None),
                DomainReading("memory", self.source, self._mem_energy_j, mem_w),
            ]

    def boundary_uncertainty_j(self, domain: str, power_w: float) -> float:
        """CPU time is counted in clock ticks (10 ms at USER_HZ=100) per process, so each
        boundary may miss up to one tick of each process in the tree."""
        if domain != "cpu":
            return 0.0
        tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
        return self.tdp.tdp_w * tick_s * (1 + len(self._children)) / self.n_cores

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
