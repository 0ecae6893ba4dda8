"""Samplers as a config group: each conf/hydra/sweeper/sampler/<name>.yaml names an Optuna
sampler as `_target_` with its arguments (the pattern of Hydra's own Optuna sweeper plugin),
so adding a sampler is adding a file, `hydra/sweeper/sampler=<name>` picks one and
`hydra.sweeper.sampler.<arg>=<value>` sets an argument. A plain name
(`hydra.sweeper.sampler=<name>`) picks a file too. The seed is always the search's own
(`hydra.sweeper.seed`, offset by a resumed study's trials).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

from sweeper.errors import ConfigError, invalid_value

SAMPLER_CONFIGS = ("hydra", "sweeper", "sampler")  # inside the sweeper.conf package
KEY = "hydra.sweeper.sampler"


def _folder() -> Any:
    return resources.files("sweeper.conf").joinpath(*SAMPLER_CONFIGS)


def sampler_names() -> tuple[str, ...]:
    return tuple(sorted(
        f.name.removesuffix(".yaml") for f in _folder().iterdir() if f.name.endswith(".yaml")
    ))


def sampler_config(sampler: str | Mapping[str, Any]) -> dict[str, Any]:
    """The sampler's config (`_target_` and arguments): a name's file, or the node itself."""
    if isinstance(sampler, str):
        if sampler not in sampler_names():
            raise invalid_value(KEY, sampler, ", ".join(sampler_names())
                                + " (conf/hydra/sweeper/sampler/), or a config with _target_")
        node = OmegaConf.load(str(_folder().joinpath(f"{sampler}.yaml")))
        return dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    if not isinstance(sampler, Mapping) or not isinstance(sampler.get("_target_"), str):
        raise invalid_value(KEY, sampler, "a sampler name, or a config with _target_")
    return dict(sampler)


def sampler_label(sampler: str | Mapping[str, Any]) -> str:
    """A short name for logs: the file's name, else the target's class name."""
    if isinstance(sampler, str):
        return sampler
    target = str(sampler_config(sampler)["_target_"])
    for name in sampler_names():
        if sampler_config(name)["_target_"] == target:
            return name
    return target.rsplit(".", 1)[-1]


class SearchContext:
    """The running search, for a sampler that plans with it: a sampler whose target takes a
    `context` argument receives this (the frontier sampler composes candidates' configs and
    reads earlier runs from the store). A plain class on purpose: Hydra's instantiate would
    turn a dataclass argument into a config node."""

    def __init__(self, *, sweeper: Any, space: Any, store: Any) -> None:
        self.sweeper = sweeper
        self.space = space
        self.store = store


def _parameters(target: str) -> Mapping[str, inspect.Parameter]:
    from hydra.utils import get_method

    try:
        return inspect.signature(get_method(target)).parameters
    except Exception as exc:  # an unimportable target, a non-callable
        raise invalid_value(f"{KEY}._target_", target, f"an importable sampler ({exc})") from exc


def check_sampler(sampler: str | Mapping[str, Any]) -> dict[str, Any]:
    """The sampler's config, its every argument checked against its target's signature
    (before any study is opened or trial launched)."""
    config = sampler_config(sampler)
    params = _parameters(config["_target_"])
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for arg in config:
        if arg == "_target_" or takes_any or arg in params:
            continue
        allowed = ", ".join(n for n in params if n not in ("self", "context", "seed"))
        raise invalid_value(f"{KEY}.{arg}", config[arg],
                            f"an argument of {config['_target_']}: {allowed or 'none'}")
    if "seed" in config:
        raise invalid_value(f"{KEY}.seed", config["seed"],
                            "nothing here: the seed is hydra.sweeper.seed")
    return config


def make_sampler(
    sampler: str | Mapping[str, Any], *, seed: int | None, context: SearchContext | None = None
) -> Any:
    """The Optuna sampler that a name or a sampler config describes."""
    from hydra.utils import instantiate

    config = check_sampler(sampler)
    params = _parameters(config["_target_"])
    extra: dict[str, Any] = {}
    if "context" in params:
        if context is None:
            raise ConfigError(f"{KEY}={sampler_label(sampler)} plans with the search itself; "
                              "it runs only inside hydra/sweeper=pareto")
        extra["context"] = context
    if "seed" in params:
        extra["seed"] = seed
    try:
        return instantiate(OmegaConf.create(config), **extra)
    except Exception as exc:  # a bad argument value the target itself refuses
        raise ConfigError(f"invalid {KEY} for {config['_target_']}: "
                          f"{getattr(exc, '__cause__', None) or exc}") from exc
