"""Side figures of a phase: the meters' optional ``stats()`` (NVML: GPU utilisation and
memory), folded into the open phase on background polls only, never at the exact boundary
readings, so their cost stays within the sampling budget. A failing ``stats()`` never costs
the energy: it is logged once and counted for the summary's warnings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sweeper.energy.reading import Failures
from sweeper.energy.types import Meter
from sweeper.energy.utilisation import Utilisation

log = logging.getLogger("sweeper.energy.sampler")  # the logger these warnings always had


class MeterStats:
    """The meters that have ``stats()``, and how often each failed."""

    def __init__(self, meters: Sequence[Meter]) -> None:
        self._meters = meters
        self._stats: list[tuple[int, Callable[[], dict[str, float]]]] = [
            (i, m.stats) for i, m in enumerate(meters) if callable(getattr(m, "stats", None))
        ]
        self._failures: dict[int, Failures] = {}

    def poll(self, util: Utilisation) -> None:
        """Add every meter's stats now to ``util`` (the open phase's)."""
        for i, stats in self._stats:
            try:
                util.add(stats())
            except Exception as e:  # utilisation is a side figure: never cost the energy
                f = self._failures.setdefault(i, Failures())
                f.count += 1
                if f.count == 1:
                    f.first = f"{type(e).__name__}: {e}"
                    src = self._meters[i].source
                    log.warning("%s stats() failed (%s); utilisation may be missing", src, f.first)

    def warnings(self) -> list[str]:
        return [
            f"{self._meters[i].source} stats() failed {f.count} time(s), first: {f.first}; "
            f"utilisation is missing from those polls (energy is unaffected)"
            for i, f in sorted(self._failures.items())
        ]
