"""Which torch device a run uses, and whether its precision is supported there."""

from __future__ import annotations

import torch

from sweeper.errors import ConfigError


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"invalid value for 'device': {requested!r}; no CUDA device is available "
                "here (allowed: auto, cpu)"
            )
        device = torch.device(requested)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"invalid value for 'device': {requested!r}; only "
                f"{torch.cuda.device_count()} CUDA device(s) visible"
            )
        return device
    return torch.device(requested)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in, before any work starts."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"invalid value for 'precision': 'fp16' on device {device}; fp16 autocast with "
            "loss scaling needs a CUDA GPU (allowed here: fp32, bf16)"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"invalid value for 'precision': 'bf16' on {torch.cuda.get_device_name(device)}, "
            "which does not support bfloat16 (allowed here: fp32, fp16)"
        )


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def describe_accelerator(device: torch.device) -> dict[str, str | int]:
    """Identity of the accelerator used, for the run's hardware record."""
    if device.type != "cuda":
        return {"device": str(device), "torch": torch.__version__}
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "device": f"cuda:{index}",
        "gpu_model": props.name,
        "gpu_count": torch.cuda.device_count(),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "cuda": str(torch.version.cuda),
        "torch": torch.__version__,
    }
