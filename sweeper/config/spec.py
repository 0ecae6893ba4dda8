"""Turning a composed Hydra config into a validated RunSpec.

Every user-facing value is checked here, before any data is loaded or any row is
written, by the schema's one validator (sweeper.config.schema), and an error names the
key, the bad value and what is allowed. The RunSpec is the schema's object: the same
nested keys (`spec.inference.batches`, `spec.storage.url`), with the config groups read
into their names and options, and the few values derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from sweeper.config.identity import config_hash
from sweeper.config.keys import check_keys
from sweeper.config.launch import identity as launch_identity
from sweeper.config.schema import (  # noqa: F401  (names other stages import from here)
    INFERENCE_PROTOCOLS,
    MAX_SAMPLE_HZ,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    Rule,
    Storage,
    SweeperConfig,
    check_cross_keys,
    check_name,
    check_value,
    field_of,
    leaves,
    rule_of,
    validate,
)
from sweeper.datasets import DATASET_NAMES
from sweeper.energy.power_limit import PowerLimitRequest
from sweeper.errors import invalid_value
from sweeper.models import MODEL_NAMES
from sweeper.redact import mask_config

_ABSENT = object()


@dataclass
class RunSpec(SweeperConfig):
    """The validated config: the schema's keys, with the groups as names and options."""

    model: str = ""  # type: ignore[assignment]  # the group's option; its keys: model_options
    dataset: str = ""  # type: ignore[assignment]
    precision: str = ""  # type: ignore[assignment]
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    power_limit: PowerLimitRequest = field(default_factory=PowerLimitRequest)
    config: dict[str, Any] = field(default_factory=dict)  # the full resolved config (masked)
    config_hash: str = ""

    @property
    def model_label(self) -> str:
        """The model as stored and reported: `model=torchvision` names its architecture
        (`torchvision:resnet50`), so different architectures are never pooled as one."""
        if self.model == "torchvision":
            return f"torchvision:{self.model_options.get('arch')}"
        return self.model


def outage_s(cfg: DictConfig) -> float:
    """storage.outage_s: seconds >= 0 (0: give up at the first failure); a config saved
    before the key existed gets the default."""
    value = OmegaConf.select(cfg, "storage.outage_s", default=_ABSENT)
    if value is _ABSENT:
        return Storage().outage_s
    return check_value("storage.outage_s", value, rule_of(field_of("storage.outage_s")))


# Keys whose check reads no other key and that change no estimate (`key(..., alone=True)`
# in the schema): a grid checks each distinct value of these once
# (sweeper.app.grid_check) instead of composing every job.
SINGLE_KEY_CHECKS: dict[str, Rule] = {
    name: rule_of(f) for name, f in leaves() if f.metadata.get("alone")
}


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


def _power_limit(cfg: SweeperConfig) -> PowerLimitRequest:
    """gpu.power_limit (a fraction of the default limit, or auto) or gpu.power_limit_w,
    not both (schema.check_cross_keys); gpu.max_slowdown bounds auto."""
    gpu = cfg.gpu
    auto = gpu.power_limit == "auto"
    return PowerLimitRequest(None if auto else gpu.power_limit, gpu.power_limit_w, auto,
                             gpu.max_slowdown)


def build_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed config (its hydra node, if any, is ignored)."""
    check_keys(cfg)
    raw = _resolve_without_hydra(cfg)
    # Stored with every run, so passwords are masked; a torchrun launch adds its world size.
    resolved = mask_config(raw) | launch_identity()

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

    values = validate(SweeperConfig, raw)
    checked = SweeperConfig(**values)
    check_cross_keys(checked)
    own = {f.name: getattr(checked, f.name) for f in fields(SweeperConfig)}
    return RunSpec(
        **own | {"model": model, "dataset": dataset, "precision": precision},
        model_options=model_cfg,
        dataset_options=dataset_cfg,
        power_limit=_power_limit(checked),
        config=resolved,
        config_hash=config_hash(resolved),
    )
