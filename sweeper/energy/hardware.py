"""Identity of the machine a run measured, so results from different hardware never mix."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import psutil

from sweeper.energy import cpu_model_name


@dataclass(frozen=True)
class Hardware:
    host: str
    cpu_model: str
    cpu_count: int
    memory_gib: float
    gpu_model: str | None = None
    gpu_count: int = 0
    details: dict[str, str] = field(default_factory=dict)
    # From the NVML meter, for the GPUs measured: what bounds their power draw.
    gpu_driver: str | None = None
    gpus: dict[str, dict[str, str | float]] = field(default_factory=dict)

    @property
    def hardware_id(self) -> str:
        """Short fingerprint of what bounds energy figures: CPU, GPUs, host."""
        key = "|".join(
            [
                self.host,
                self.cpu_model,
                str(self.cpu_count),
                str(self.gpu_model),
                str(self.gpu_count),
            ]
        )
        if self.gpu_driver or self.gpus:
            # A driver update or a changed power cap changes the joules: a new identity.
            limits = ",".join(
                f"{d}={g.get('name')}@{g.get('power_limit_w')}"
                for d, g in sorted(self.gpus.items())
            )
            key += f"|{self.gpu_driver}|{limits}"
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "hardware_id": self.hardware_id}


GpuInfo = dict[str, dict[str, str | float]]  # "gpu:0" -> {"name": ..., "power_limit_w": ...}


def nvml_identity(meters: Mapping[str, str]) -> tuple[str | None, GpuInfo]:
    """Driver version and per-GPU name and power limit from a MeterSet.describe()
    ("nvml.nvml_driver_version", "nvml.gpu:0.name", "nvml.gpu:0.power_limit_w")."""
    driver = meters.get("nvml.nvml_driver_version")
    gpus: GpuInfo = {}
    for key, value in meters.items():
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] != "nvml" or not parts[1].startswith("gpu:"):
            continue
        gpu = gpus.setdefault(parts[1], {})
        if parts[2] == "name":
            gpu["name"] = value
        elif parts[2] == "power_limit_w":
            gpu["power_limit_w"] = float(value)
    return driver, gpus


def describe_host(
    accelerator: dict[str, str | int] | None = None, meters: Mapping[str, str] | None = None
) -> Hardware:
    """The host, its CPU, the accelerator used and, when NVML measures, the GPUs' driver
    and power limits (`meters` is MeterSet.describe())."""
    gpu_driver, gpus = nvml_identity(meters or {})
    accelerator = dict(accelerator or {})
    gpu_model = accelerator.pop("gpu_model", None)
    gpu_count = int(accelerator.pop("gpu_count", 0) or 0)
    details = {k: str(v) for k, v in accelerator.items()}
    details["platform"] = platform.platform()
    details["python"] = platform.python_version()
    return Hardware(
        host=socket.gethostname(),
        cpu_model=cpu_model_name() or platform.processor() or platform.machine() or "unknown CPU",
        cpu_count=os.cpu_count() or 1,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        gpu_model=str(gpu_model) if gpu_model else None,
        gpu_count=gpu_count,
        details=details,
        gpu_driver=gpu_driver,
        gpus=gpus,
    )
