"""Strict keys: a config may only hold the keys conf/config.yaml declares.

Hydra refuses `epoch=1` (not in the config) but accepts `+epoch=1`, which appends a new key
that nothing reads, so the run would train with the default epochs and exit 0. Every key of
a composed config is therefore checked against the primary config's keys before any work,
and an unknown one is refused naming the nearest valid key. The option groups' own keys
(model.*, dataset.*) are checked against their builders' signatures in options.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.errors import ConfigError

# Config groups: their nodes are checked by their own rules, not listed here.
GROUPS = ("model", "dataset", "precision")
_NOT_CHECKED = ("hydra", *GROUPS)


def _dotted(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping):
            yield from _dotted(value, f"{name}.")


@lru_cache(maxsize=1)
def known_keys() -> frozenset[str]:
    """Every dotted key conf/config.yaml declares (the groups by their names)."""
    text = resources.files("sweeper.conf").joinpath("config.yaml").read_text()
    primary = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    assert isinstance(primary, dict)
    primary.pop("defaults", None)
    primary.pop("hydra", None)
    return frozenset(_dotted(primary)) | frozenset(GROUPS)


def check_keys(cfg: DictConfig) -> None:
    """Refuse the first key that conf/config.yaml does not declare."""
    known = known_keys()
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    for top in _NOT_CHECKED:
        container.pop(top, None)
    for key in _dotted(container):
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else "see conf/config.yaml for the keys"
        raise ConfigError(f"unknown config key '{key}'; {hint}")
