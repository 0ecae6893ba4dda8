"""A run's identity: what it measures, written as its differences from the defaults.

Hashing the whole resolved config made every key that a new sweeper version adds a new
identity for every run, so a sweep resumed after an upgrade ran its finished work again.
The identity is therefore the set of values that differ from the defaults of the run's own
config groups (conf/config.yaml composed with its model, dataset and precision): a key that
arrives with a default leaves every identity as it was. Keys that say where and how results
are kept (storage, sweeper, hydra, trial) are never part of it.

IDENTITY_VERSION is raised when a default changes *meaning* (not when a key is added), so
that runs measured under the old default are not taken for runs under the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

IDENTITY_VERSION = 1
# Where and how results are kept, not what is measured.
EXCLUDED = ("storage", "sweeper", "hydra", "trial")
GROUPS = ("model", "dataset", "precision")


def _leaves(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{name}.")
        else:
            yield name, value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _choices(resolved: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The run's config-group options (each group's `name` is its option's file name)."""
    out = []
    for group in GROUPS:
        node = resolved.get(group)
        name = node.get("name") if isinstance(node, Mapping) else None
        if isinstance(name, str):
            out.append((group, name))
    return tuple(out)


@lru_cache(maxsize=128)
def _defaults(choices: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The composed defaults for these group options, as canonical leaf values.

    Composed with Hydra itself (the running app's search path when there is one), so the
    defaults are exactly what a run without overrides would get.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = [f"{group}={name}" for group, name in choices]
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name="config", overrides=overrides)
    else:
        with initialize_config_module("sweeper.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    container = {
        str(k): OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k])
        else cfg[k]
        for k in cfg if k not in EXCLUDED
    }
    return {key: _canonical(value) for key, value in _leaves(container)}


def identity(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a resolved config that differ from its groups' defaults (the groups'
    names always included, so two options with equal settings stay apart)."""
    defaults = _defaults(_choices(resolved))
    kept = {k: v for k, v in resolved.items() if k not in EXCLUDED}
    out = {key: value for key, value in _leaves(kept)
           if defaults.get(key) != _canonical(value)}
    out.update({f"{group}.name": name for group, name in _choices(resolved)})
    return out


def config_hash(resolved: Mapping[str, Any]) -> str:
    """Stable identity of what a run measures, across sweeper versions that add keys."""
    document = {"identity_version": IDENTITY_VERSION, "values": identity(resolved)}
    return hashlib.sha256(_canonical(document).encode()).hexdigest()
