"""Identity of the machine a run measured, so results from different hardware never mix."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from dataclasses import asdict, dataclass, field

import psutil


@dataclass(frozen=True)
class Hardware:
    host: str
    cpu_model: str
    cpu_count: int
    memory_gib: float
    gpu_model: str | None = None
    gpu_count: int = 0
    details: dict[str, str] = field(default_factory=dict)

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
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "hardware_id": self.hardware_id}


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_host(accelerator: dict[str, str | int] | None = None) -> Hardware:
    accelerator = dict(accelerator or {})
    gpu_model = accelerator.pop("gpu_model", None)
    gpu_count = int(accelerator.pop("gpu_count", 0) or 0)
    details = {k: str(v) for k, v in accelerator.items()}
    details["platform"] = platform.platform()
    details["python"] = platform.python_version()
    return Hardware(
        host=socket.gethostname(),
        cpu_model=cpu_model_name(),
        cpu_count=os.cpu_count() or 1,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        gpu_model=str(gpu_model) if gpu_model else None,
        gpu_count=gpu_count,
        details=details,
    )
