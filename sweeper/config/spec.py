"""Turning a composed Hydra config into a validated RunSpec.

Every user-facing value is checked here, before any data is loaded or any row is
written, and an error names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from sweeper.config.identity import config_hash
from sweeper.config.keys import check_keys
from sweeper.config.launch import identity as launch_identity
from sweeper.config.storage import check_url
from sweeper.datasets import DATASET_NAMES
from sweeper.energy.power_limit import PowerLimitRequest
from sweeper.errors import invalid_value
from sweeper.models import MODEL_NAMES
from sweeper.redact import mask_config
from sweeper.store.db import DEFAULT_OUTAGE_S
from sweeper.store.schema import NAME_LENGTH

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")  # as sweeper.training.schedule (torch-free here)
INFERENCE_PROTOCOLS = ("batches", "study")

_ABSENT = object()


@dataclass(frozen=True)
class RunSpec:
    model: str
    dataset: str
    batch: int
    lr: float
    optimizer: str
    epochs: int
    precision: str
    device: str
    seed: int
    meter: str
    storage_url: str
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    momentum: float = 0.9
    weight_decay: float = 0.0
    repeat: int = 0
    scheduler: str = "none"
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    loader_workers: int | None = None  # None: auto (0 on CPU, several on CUDA)
    loader_pin_memory: bool | None = None  # None: auto (on for CUDA)
    num_threads: int | None = None
    inference_batches: int = 50
    inference_batch: int = 64
    inference_warmup_batches: int = 2
    inference_protocol: str = "batches"
    inference_passes: int = 5
    inference_min_seconds: float | None = None  # None: from the meters' resolution
    inference_every_epoch: bool = False  # an inference phase after every epoch (the study)
    inference_pause_s: float = 0.0  # idle before each inference phase (the study: 2)
    idle_seconds: float = 5.0
    idle_max_age_h: float = 24.0
    busy_other_cpu_pct: float = 25.0
    forecast_warmup_seconds: float | None = None
    forecast_min_seconds: float | None = None
    sample_hz: float = 10.0
    gpus: tuple[int, ...] | None = None
    cpu_tdp_w: float | None = None
    country: str = "WORLD"
    region: str | None = None
    pue: float = 1.0
    keep_samples: bool = True
    forecast_window: float = 0.05
    forecast_warmup_steps: int = 2
    sweep_name: str | None = None
    resume: bool = True
    progress: bool = True
    trial: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the full resolved config
    config_hash: str = ""
    storage_outage_s: float = DEFAULT_OUTAGE_S  # how long the store may be unreachable
    power_limit: PowerLimitRequest = field(default_factory=PowerLimitRequest)

    @property
    def model_label(self) -> str:
        """The model as stored and reported: `model=torchvision` names its architecture
        (`torchvision:resnet50`), so different architectures are never pooled as one."""
        if self.model == "torchvision":
            return f"torchvision:{self.model_options.get('arch')}"
        return self.model


def _int(cfg: DictConfig, key: str, *, minimum: int, allow_none: bool = False) -> int | None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid_value(key, value, f"an integer >= {minimum}")
    return value


def _float(
    cfg: DictConfig, key: str, *, minimum: float, strict: bool = True, allow_none: bool = False
) -> float | None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    number = math.nan
    if ok:
        with contextlib.suppress(OverflowError):  # an int beyond float range
            number = float(value)
        ok = math.isfinite(number) and (number > minimum if strict else number >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise invalid_value(key, value, f"a finite number {relation} {minimum:g}")  # value as given
    return number


# Above this the sampler's own CPU time grows past its 1% target on a laptop core, while no
# meter refreshes faster than ~1 kHz (RAPL) or ~10 Hz (NVML's energy counter).
MAX_SAMPLE_HZ = 1000.0


def _sample_hz(cfg: DictConfig) -> float:
    value = _float(cfg, "energy.sample_hz", minimum=0.0)
    assert value is not None
    if value > MAX_SAMPLE_HZ:  # the value as given: float() may have rounded it
        raise invalid_value("energy.sample_hz", OmegaConf.select(cfg, "energy.sample_hz"),
                            f"a rate in Hz > 0 and <= {MAX_SAMPLE_HZ:g}")
    return value


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise invalid_value(key, value, ", ".join(allowed))
    return value


def _auto_int(cfg: DictConfig, key: str) -> int | None:
    """An integer >= 0, or `auto` (None)."""
    value = OmegaConf.select(cfg, key, default="auto")
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_value(key, value, "auto or an integer >= 0")
    return value


def _auto_bool(cfg: DictConfig, key: str) -> bool | None:
    value = OmegaConf.select(cfg, key, default="auto")
    if value == "auto":
        return None
    if not isinstance(value, bool):
        raise invalid_value(key, value, "auto, true or false")
    return value


def outage_s(cfg: DictConfig) -> float:
    """storage.outage_s: seconds >= 0 (0: give up at the first failure); a config saved
    before the key existed gets the default."""
    if OmegaConf.select(cfg, "storage.outage_s", default=_ABSENT) is _ABSENT:
        return DEFAULT_OUTAGE_S
    return _float(cfg, "storage.outage_s", minimum=0.0, strict=False)  # type: ignore[return-value]


def check_name(key: str, name: str, length: int = NAME_LENGTH, what: str = "") -> None:
    """A sweep or study name the store can hold, on every store (PostgreSQL refuses a longer
    one; SQLite would keep it)."""
    if len(name) > length:
        raise invalid_value(
            key, f"{name[:40]}... ({len(name)} characters{what})", f"at most {length} characters"
        )


def _sweep_name(cfg: DictConfig) -> str | None:
    value = OmegaConf.select(cfg, "sweeper.name")
    if value is None:
        return None
    name = str(value)
    if not name.strip():
        raise invalid_value("sweeper.name", value, "null or a non-empty name")
    check_name("sweeper.name", name)
    return name


def _choice_default(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> str:
    """A choice whose key a config composed without it (an old preset) may lack."""
    if OmegaConf.select(cfg, key) is None:
        return allowed[0]
    return _choice(cfg, key, allowed)


def _float_default(cfg: DictConfig, key: str, default: float) -> float:
    """A finite number >= 0 that a config composed without the key gets by default."""
    if OmegaConf.select(cfg, key) is None:
        return default
    return _float(cfg, key, minimum=0.0, strict=False)  # type: ignore[return-value]


def _meter(value: Any) -> str:
    """`meter=`, read by the rule open_meters applies (auto, one meter, or a '+' list)."""
    from sweeper.energy.select import CHOICES, SOURCES, parse_choice

    try:
        return "+".join(parse_choice(value))
    except ValueError:
        raise invalid_value("meter", value, f"{', '.join(CHOICES)}, or a '+' combination "
                            f"of {', '.join(SOURCES)} such as nvml+rapl") from None


def _bool_default(cfg: DictConfig, key: str, default: bool) -> bool:
    """true or false; a config composed without the key gets the default."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_value(key, value, "true or false")
    return value


def _device(value: Any) -> str:
    text = str(value)
    if text in ("auto", "cpu", "cuda"):
        return text
    if text.startswith("cuda:") and text[5:].isascii() and text[5:].isdigit():  # not "cuda:²"
        return text
    raise invalid_value("device", value, "auto, cpu, cuda, cuda:N")


def _resolve_without_hydra(cfg: DictConfig) -> dict[str, Any]:
    """Resolve the app's keys only: the hydra node holds values that exist per job alone."""
    out: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            continue
        value = cfg[key]
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        out[str(key)] = value
    return out


def _power_limit(cfg: DictConfig) -> PowerLimitRequest:
    """gpu.power_limit (a fraction of the default limit, or auto) or gpu.power_limit_w,
    not both; gpu.max_slowdown bounds auto."""
    value = OmegaConf.select(cfg, "gpu.power_limit")
    auto = value == "auto"
    if isinstance(value, str) and not auto:
        raise invalid_value("gpu.power_limit", value, "null, auto, or a fraction of the "
                            "card's default limit in (0, 2] such as 0.8")
    fraction = None if auto else _float(cfg, "gpu.power_limit", minimum=0.0, allow_none=True)
    watts = _float(cfg, "gpu.power_limit_w", minimum=0.0, allow_none=True)
    if (fraction is not None or auto) and watts is not None:
        raise invalid_value("gpu.power_limit_w", watts,
                            "null while gpu.power_limit is set (one of the two)")
    max_slowdown = _float_default(cfg, "gpu.max_slowdown", 0.1)
    if fraction is not None and fraction > 2.0:  # a likely typo for watts
        raise invalid_value("gpu.power_limit", fraction, "a fraction of the card's default "
                            "limit in (0, 2]; watts go in gpu.power_limit_w")
    return PowerLimitRequest(fraction, watts, auto, max_slowdown)


# Keys whose check reads no other key (and that change no estimate): a grid checks each
# distinct value of these once (sweeper.app.grid_check) instead of composing every job.
SINGLE_KEY_CHECKS: dict[str, Callable[[DictConfig], Any]] = {
    "lr": lambda cfg: _float(cfg, "lr", minimum=0.0),
    "momentum": lambda cfg: _float(cfg, "momentum", minimum=0.0, strict=False),
    "weight_decay": lambda cfg: _float(cfg, "weight_decay", minimum=0.0, strict=False),
    "seed": lambda cfg: _int(cfg, "seed", minimum=0),
    "repeat": lambda cfg: _int(cfg, "repeat", minimum=0),
    "optimizer": lambda cfg: _choice(cfg, "optimizer", OPTIMIZERS),
    "scheduler": lambda cfg: _choice(cfg, "scheduler", SCHEDULERS),
}


def build_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed config (its hydra node, if any, is ignored)."""
    check_keys(cfg)
    # Stored with every run, so passwords are masked; a torchrun launch adds its world size.
    resolved = mask_config(_resolve_without_hydra(cfg)) | launch_identity()

    model_cfg = dict(resolved.get("model") or {})
    model = model_cfg.pop("name", None)
    if model not in MODEL_NAMES:
        raise invalid_value("model", model, ", ".join(MODEL_NAMES))
    dataset_cfg = dict(resolved.get("dataset") or {})
    dataset = dataset_cfg.pop("name", None)
    if dataset not in DATASET_NAMES:
        raise invalid_value("dataset", dataset, ", ".join(DATASET_NAMES))
    from sweeper.config.options import check_dataset_options, check_model_options  # imports spec

    check_dataset_options(dataset, dataset_cfg)
    check_model_options(model, model_cfg, dataset, dataset_cfg)
    precision = OmegaConf.select(cfg, "precision.name")
    if precision not in PRECISIONS:
        raise invalid_value("precision", precision, ", ".join(PRECISIONS))

    gpus = OmegaConf.select(cfg, "energy.gpus")
    if gpus is not None:
        gpus = [gpus] if isinstance(gpus, int) else list(gpus)
        if not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus):
            raise invalid_value("energy.gpus", gpus, "null or a list of GPU indices >= 0")
        gpus = tuple(gpus)

    url = check_url(OmegaConf.select(cfg, "storage.url"))

    country = OmegaConf.select(cfg, "energy.country")
    if not isinstance(country, str) or not country:
        raise invalid_value(
            "energy.country", country, "an ISO 3166 alpha-3 code such as FRA, or WORLD"
        )

    window = _float(cfg, "forecast.window", minimum=0.0)
    if window is not None and window >= 1.0:
        raise invalid_value("forecast.window", window, "a fraction between 0 and 1 (exclusive)")

    trial = OmegaConf.select(cfg, "trial", default=None)
    return RunSpec(
        model=model,
        dataset=dataset,
        model_options=model_cfg,
        dataset_options=dataset_cfg,
        batch=_int(cfg, "batch", minimum=1),  # type: ignore[arg-type]
        lr=SINGLE_KEY_CHECKS["lr"](cfg),
        optimizer=SINGLE_KEY_CHECKS["optimizer"](cfg),
        momentum=SINGLE_KEY_CHECKS["momentum"](cfg),
        weight_decay=SINGLE_KEY_CHECKS["weight_decay"](cfg),
        epochs=_int(cfg, "epochs", minimum=1),  # type: ignore[arg-type]
        precision=precision,
        device=_device(OmegaConf.select(cfg, "device")),
        seed=SINGLE_KEY_CHECKS["seed"](cfg),
        repeat=SINGLE_KEY_CHECKS["repeat"](cfg),
        scheduler=SINGLE_KEY_CHECKS["scheduler"](cfg),
        lr_step_epochs=_int(cfg, "lr_step.epochs", minimum=1),  # type: ignore[arg-type]
        lr_gamma=_float(cfg, "lr_step.gamma", minimum=0.0),  # type: ignore[arg-type]
        loader_workers=_auto_int(cfg, "loader.workers"),
        loader_pin_memory=_auto_bool(cfg, "loader.pin_memory"),
        num_threads=_int(cfg, "num_threads", minimum=1, allow_none=True),
        meter=_meter(OmegaConf.select(cfg, "meter")),
        inference_batches=_int(cfg, "inference.batches", minimum=1),  # type: ignore[arg-type]
        inference_batch=_int(cfg, "inference.batch", minimum=1),  # type: ignore[arg-type]
        inference_warmup_batches=_int(cfg, "inference.warmup_batches", minimum=0),  # type: ignore[arg-type]
        inference_protocol=_choice_default(cfg, "inference.protocol", INFERENCE_PROTOCOLS),
        inference_passes=_int(cfg, "inference.passes", minimum=1, allow_none=True) or 5,
        inference_min_seconds=_float(
            cfg, "inference.min_seconds", minimum=0.0, strict=False, allow_none=True
        ),
        inference_every_epoch=_bool_default(cfg, "inference.every_epoch", False),
        inference_pause_s=_float_default(cfg, "inference.pause_s", 0.0),
        idle_seconds=_float_default(cfg, "energy.idle.seconds", 5.0),
        idle_max_age_h=_float_default(cfg, "energy.idle.max_age_h", 24.0),
        busy_other_cpu_pct=_float_default(cfg, "energy.busy_other_cpu_pct", 25.0),
        forecast_warmup_seconds=_float(
            cfg, "forecast.warmup_seconds", minimum=0.0, strict=False, allow_none=True
        ),
        forecast_min_seconds=_float(
            cfg, "forecast.min_seconds", minimum=0.0, strict=False, allow_none=True
        ),
        sample_hz=_sample_hz(cfg),
        gpus=gpus,
        cpu_tdp_w=_float(cfg, "energy.cpu_tdp_w", minimum=0.0, allow_none=True),
        country=country,
        region=OmegaConf.select(cfg, "energy.region"),
        pue=_float(cfg, "energy.pue", minimum=1.0, strict=False),  # type: ignore[arg-type]
        keep_samples=bool(OmegaConf.select(cfg, "energy.keep_samples", default=True)),
        forecast_window=window,  # type: ignore[arg-type]
        forecast_warmup_steps=_int(cfg, "forecast.warmup_steps", minimum=0),  # type: ignore[arg-type]
        storage_url=url,
        storage_outage_s=outage_s(cfg),
        power_limit=_power_limit(cfg),
        sweep_name=_sweep_name(cfg),
        resume=bool(OmegaConf.select(cfg, "sweeper.resume", default=True)),
        progress=bool(OmegaConf.select(cfg, "sweeper.progress", default=True)),
        trial=trial if isinstance(trial, int) else None,
        config=resolved,
        config_hash=config_hash(resolved),
    )
