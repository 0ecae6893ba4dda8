"""The sampler's background thread and its waits on the wall clock: a daemon thread that
calls ``tick()`` when it asks to be woken, the counter reads meters ask for to timestamp
their refreshes (``watch()`` when ``next_read_s`` says, just before and after each refresh),
and, once per run at stop, a wait of a few refresh periods for the refreshes after the last
boundaries."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from sweeper.energy.types import Meter


def watch(watchers: Sequence[Meter], now: float, clock: Callable[[], float]) -> float:
    """Counter reads the meters asked for by ``now``; returns the earliest next one (or +inf)."""
    wake_s = math.inf
    for meter in watchers:
        try:
            due = meter.next_read_s(now)  # type: ignore[attr-defined]
            if due is not None and due <= now:
                meter.watch()  # type: ignore[attr-defined]
                due = meter.next_read_s(clock())  # type: ignore[attr-defined]
        except Exception:  # a broken meter is reported by its full reads
            continue
        if due is not None:
            wake_s = min(wake_s, due)
    return wake_s


def wait_for_refreshes(
    watchers: Sequence[Meter],
    clock: Callable[[], float],
    step: Callable[[], tuple[bool, float]],
) -> None:
    """Call ``step`` (settle what can be; returns (done, when to wake)) until done, or the
    watchers' ``settle_s`` has passed: at most a few refresh periods."""
    if not watchers:
        return
    settle_s = max(float(getattr(m, "settle_s", lambda: 0.0)()) for m in watchers)
    deadline = clock() + settle_s
    while True:
        done, wake_s = step()
        now = clock()
        if done or now >= deadline:
            return
        time.sleep(max(0.0, min(wake_s, deadline) - now))


class SamplingThread:
    """A daemon thread that waits for ``release()``, then ticks until ``stop()``."""

    def __init__(self, tick: Callable[[], float], clock: Callable[[], float]) -> None:
        self._tick = tick
        self._clock = clock
        self._stop_event = threading.Event()
        self._ready = threading.Event()  # set once the baseline reading exists
        self._thread: threading.Thread | None = None
        self.cpu_s = 0.0  # CPU seconds the thread has used, as it measured itself

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """The baseline exists: start ticking."""
        self._ready.set()

    def stop(self) -> None:
        self._stop_event.set()
        self._ready.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        self._ready.wait()
        while True:
            wake_s = self._tick()
            self.cpu_s = time.thread_time()
            if self._stop_event.wait(max(0.0, wake_s - self._clock())):
                return
