"""A process and its live descendants, as the CPU-time readers see them.

Finding the descendants is a /proc scan, so it is done at most every ``refresh_s``; between
scans the same psutil handles are kept (they carry psutil's CPU-time caches), and one that
has exited is forgotten by the reader that notices.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil


class ProcessTree:
    """`root`'s descendants, cached between scans (the estimate meter and the contention
    probe both count their CPU time)."""

    def __init__(
        self, root: psutil.Process, clock: Callable[[], float], refresh_s: float
    ) -> None:
        self.root = root
        self._clock = clock
        self._refresh_s = refresh_s
        self._children: dict[int, psutil.Process] = {}
        self._children_at = float("-inf")

    def children(self) -> list[psutil.Process]:
        """The root's descendants, rescanned when the last scan is ``refresh_s`` old."""
        now = self._clock()
        if now - self._children_at >= self._refresh_s:
            self._children_at = now
            try:
                found = self.root.children(recursive=True)
            except psutil.Error:
                found = []
            self._children = {c.pid: self._children.get(c.pid, c) for c in found}
        return list(self._children.values())

    def known(self) -> int:
        """How many descendants the last scan found (no new scan)."""
        return len(self._children)

    def forget(self, pid: int) -> None:
        """Drop a descendant that could not be read (it exited) until the next scan finds it."""
        self._children.pop(pid, None)
