"""A minimal pynvml stand-in for the idle-baseline tests: one GPU drawing a constant power,
whose energy counter advances only at refreshes, as NVML's does.

Deliberately small and isolated: the shared trace-driven fake (tests/fake_nvml.py, from the
h-energy branch) replaces it; only tests/test_idle_net.py imports it.
"""

from __future__ import annotations

import math
import time


class NVMLError(Exception):
    pass


class StubNvml:
    NVMLError = NVMLError

    def __init__(self, power_w: float, refresh_s: float = 0.01) -> None:
        self.power_w = power_w
        self.refresh_s = refresh_s
        self.t0 = time.perf_counter()

    def _refreshed_s(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return math.floor(elapsed / self.refresh_s) * self.refresh_s

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return int(self.power_w * self._refreshed_s() * 1000)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return int(self.power_w * 1000)
