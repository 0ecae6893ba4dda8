"""CPU package and DRAM energy from the Linux powercap RAPL counters.

The kernel exposes one zone per CPU package (``intel-rapl:N``; AMD Zen CPUs use the same
driver and names on kernels >= 5.8, and ``amd-rapl:N`` is accepted too) with subzones such as
``core``, ``uncore`` and ``dram``. Each zone has a microjoule counter ``energy_uj`` that wraps
at ``max_energy_range_uj``. We measure packages and DRAM only: ``core`` and ``uncore`` are
contained in their package, and ``psys`` (platform) contains the packages, so adding them
would count energy twice.

Wraparound is only detectable if the counter is read at least once per wrap period (minutes
to hours, e.g. 262 kJ at 300 W is ~15 min); the sampler polls far more often than that.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from sweeper.energy.cpu_name import cpu_model_name
from sweeper.energy.tdp import lookup_cpu_tdp_w
from sweeper.energy.types import DomainReading, MeterReadError
from sweeper.errors import MeterUnavailable

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

_PACKAGE_ZONE = re.compile(r"^(?:intel|amd)-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^(?:intel|amd)-rapl:(\d+):(\d+)$")

UPDATE_S = 0.001  # RAPL counters update about every millisecond
# Turbo power limit 2 (PL2) of desktop parts reaches about twice the rated TDP; a package
# above that is not physical.
TURBO_HEADROOM = 2.0

PERMISSION_FIX = (
    "RAPL energy counters are readable only by root on most kernels since 2020 "
    "(CVE-2020-8694). Fix one of: run as root; "
    "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj` (until reboot); or a udev rule such as "
    '`SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r /sys%p/energy_uj"` '
    "in /etc/udev/rules.d/99-rapl.rules."
)


def counter_delta_uj(prev_uj: int, cur_uj: int, max_range_uj: int) -> int:
    """Energy between two reads of a counter that wraps back to 0 after ``max_range_uj``.

    The counter takes values 0..max_range_uj inclusive, so a wrap subtracts max_range_uj + 1.
    (The hardware really wraps one energy unit, 15-61 uJ, past max_range_uj; the difference
    is negligible.) At most one wrap between reads can be seen: read often enough.
    """
    if cur_uj >= prev_uj:
        return cur_uj - prev_uj
    if max_range_uj <= 0:
        raise ValueError(
            f"counter went backwards ({prev_uj} -> {cur_uj} uJ) and max_range_uj is unknown"
        )
    return cur_uj + (max_range_uj + 1) - prev_uj


def _read_int(path: Path) -> int:
    """One integer sysfs file; a module-level function so tests can simulate root-only files."""
    with open(path, encoding="ascii") as f:
        return int(f.read().strip())


def _read_name(zone_dir: Path) -> str:
    try:
        return (zone_dir / "name").read_text(encoding="ascii").strip()
    except OSError:
        return ""


@dataclass
class _Domain:
    domain: str
    zone: str
    energy_path: Path
    max_range_uj: int
    last_uj: int = 0
    total_uj: int = 0


def _discover(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(domain name, zone dir) for every package and DRAM zone, plus zones left out and why."""
    found: list[tuple[str, Path]] = []
    skipped: list[str] = []
    if not root.is_dir():
        return found, skipped
    packages = sorted(
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _PACKAGE_ZONE.match(p.name)) and p.is_dir()
    )
    used: set[str] = set()

    def add(domain: str, zone_dir: Path) -> str:
        if domain in used:  # some AMD kernels name every package "package-0"
            domain = f"{domain.rsplit('-', 1)[0]}-{zone_dir.name.split(':', 1)[1]}"
        used.add(domain)
        found.append((domain, zone_dir))
        return domain

    for zone_idx, pkg_dir in packages:
        name = _read_name(pkg_dir)
        if name == "dram":  # DRAM as its own top-level zone
            add(f"dram-{zone_idx}", pkg_dir)
            continue
        if not re.match(r"^package-\d+$", name):  # psys and unknown zones overlap packages
            skipped.append(f"{pkg_dir.name}={name or '?'}")
            continue
        pkg_num = add(name, pkg_dir).rsplit("-", 1)[1]
        subs = {p.name: p for p in pkg_dir.iterdir() if _SUB_ZONE.match(p.name) and p.is_dir()}
        # sysfs also links subzones at the top level; use those if a tree does not nest them
        for p in root.iterdir():
            sm = _SUB_ZONE.match(p.name)
            if sm and int(sm.group(1)) == zone_idx and p.name not in subs and p.is_dir():
                subs[p.name] = p
        for sub_name in sorted(subs, key=lambda s: int(s.rsplit(":", 1)[1])):
            sub_dir = subs[sub_name]
            kind = _read_name(sub_dir)
            if kind == "dram":
                add(f"dram-{pkg_num}", sub_dir)
            else:  # core, uncore: already inside the package figure
                skipped.append(f"{sub_name}={kind or '?'}")
    return found, skipped


class RaplMeter:
    """Cumulative per-package and per-DRAM energy in joules since the meter was opened."""

    source = "rapl"

    def __init__(self, powercap_root: Path | str = DEFAULT_POWERCAP_ROOT) -> None:
        self.root = Path(powercap_root)
        zones, self.skipped_zones = _discover(self.root)
        if not zones:
            raise MeterUnavailable(
                f"no RAPL package zones under {self.root} (not Linux, no intel_rapl/amd "
                "powercap driver loaded, or a VM that does not expose RAPL)"
            )
        self._lock = threading.Lock()
        self._domains: list[_Domain] = []
        for domain, zone_dir in zones:
            energy_path = zone_dir / "energy_uj"
            try:
                max_range_uj = _read_int(zone_dir / "max_energy_range_uj")
                first_uj = _read_int(energy_path)
            except PermissionError as e:
                raise MeterUnavailable(
                    f"cannot read {e.filename or energy_path}: {PERMISSION_FIX}"
                ) from e
            except (OSError, ValueError) as e:
                raise MeterUnavailable(f"cannot read RAPL zone {zone_dir}: {e}") from e
            self._domains.append(
                _Domain(domain, zone_dir.name, energy_path, max_range_uj, last_uj=first_uj)
            )

    @property
    def domains(self) -> list[str]:
        return [d.domain for d in self._domains]

    @property
    def covers(self) -> str:
        """What it measures, for the meter selection's notes."""
        return ", ".join(self.domains)

    def read(self) -> list[DomainReading]:
        """Read every counter once, folding wraps into the running totals."""
        with self._lock:
            out = []
            for d in self._domains:
                try:
                    cur_uj = _read_int(d.energy_path)
                except (OSError, ValueError) as e:
                    raise MeterReadError(f"RAPL read of {d.energy_path} failed: {e}") from e
                d.total_uj += counter_delta_uj(d.last_uj, cur_uj, d.max_range_uj)
                d.last_uj = cur_uj
                out.append(DomainReading(d.domain, self.source, d.total_uj / 1e6))
            return out

    def boundary_uncertainty_j(
        self, domain: str, power_w: float, t_s: float | None = None
    ) -> float:
        """A boundary read is at most one counter update (~1 ms) old."""
        return UPDATE_S * abs(power_w)

    def max_power_w(self) -> dict[str, tuple[float, str]]:
        """Each package's bound from the CPU's rated TDP, where the model is known (an
        unknown CPU's default TDP could be far below a large server part's)."""
        tdp = lookup_cpu_tdp_w(cpu_model_name())
        if tdp.matched_name is None:
            return {}
        why = f"{tdp.tdp_w:g} W rated TDP ({tdp.matched_name}) x {TURBO_HEADROOM:g} for turbo"
        return {
            d.domain: (tdp.tdp_w * TURBO_HEADROOM, why)
            for d in self._domains if d.domain.startswith("package-")
        }

    def describe(self) -> dict[str, str]:
        info = {
            "cpu_model": cpu_model_name() or "unknown",
            "rapl_domains": ",".join(self.domains),
            "rapl_zones": ",".join(f"{d.zone}={d.domain}" for d in self._domains),
        }
        if self.skipped_zones:
            info["rapl_not_measured"] = ",".join(self.skipped_zones)
        return info

    def close(self) -> None:
        """Nothing to release: files are opened per read."""
