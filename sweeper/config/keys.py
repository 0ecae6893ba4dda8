"""Strict keys: a config may only hold the keys the schema (sweeper.config.schema) declares.

Hydra refuses `epoch=1` (not in the schema) but accepts `+epoch=1`, which appends a new key
that nothing reads, so the run would train with the default epochs and exit 0. Every key of
a composed config is therefore checked against the schema's keys before any work,
and an unknown one is refused naming the nearest valid key. The option groups' own keys
(model.*, dataset.*) are checked against their builders' signatures in options.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.config.schema import GROUPS, leaves
from sweeper.errors import ConfigError, invalid_value

# Config groups: their nodes are checked by their own rules, not listed here.
_NOT_CHECKED = ("hydra", *GROUPS)


def _dotted(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping):
            yield from _dotted(value, f"{name}.")


@lru_cache(maxsize=1)
def known_keys() -> frozenset[str]:
    """Every dotted key the schema declares, its nodes too (the groups by their names)."""
    keys = {name for name, _ in leaves()}
    nodes = {name.rsplit(".", i)[0] for name in keys for i in range(1, name.count(".") + 1)}
    return frozenset(keys | nodes) | frozenset(GROUPS)


def unknown_key(key: str) -> ConfigError:
    """The one line for a key the schema does not declare, naming the nearest valid key."""
    close = difflib.get_close_matches(key, sorted(known_keys()), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "see `python -m sweeper --help` for the keys"
    return ConfigError(f"unknown config key '{key}'; {hint}")


def check_keys(cfg: DictConfig) -> None:
    """Refuse the first key that the schema does not declare."""
    known = known_keys()
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    for top in _NOT_CHECKED:
        container.pop(top, None)
    for key in _dotted(container):
        if key not in known:
            raise unknown_key(key)


def usage_error(exc: BaseException) -> ConfigError | None:
    """Hydra's or OmegaConf's refusal of a key or value (several lines, naming the schema's
    classes) as sweeper's one line naming the key, the value and what is allowed; None for
    any other error."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from sweeper.config.schema import field_of, rule_of

    cause: BaseException | None = exc
    while cause is not None:
        full_key = getattr(cause, "full_key", None)
        if isinstance(cause, ValidationError) and full_key:
            f = field_of(str(full_key))
            allowed = rule_of(f).allowed() if f is not None else str(cause.msg).split("\n")[0]
            return invalid_value(str(full_key), getattr(cause, "value", None), allowed)
        if isinstance(cause, ConfigAttributeError | ConfigKeyError) and full_key:
            return unknown_key(str(full_key))
        cause = cause.__cause__ or cause.__context__
    return None
