"""Samplers as configs: each conf/hydra/sweeper/sampler/<name>.yaml names an Optuna sampler as
`_target_` (the pattern of Hydra's own Optuna sweeper plugin), so adding a sampler is adding
a file, and `hydra.sweeper.sampler=<name>` picks one. `${seed}` and `${population_size}`
in a file come from the search's settings.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from omegaconf import OmegaConf

from sweeper.errors import ConfigError

SAMPLER_CONFIGS = ("hydra", "sweeper", "sampler")  # inside the sweeper.conf package


def _folder() -> Any:
    return resources.files("sweeper.conf").joinpath(*SAMPLER_CONFIGS)


def sampler_names() -> tuple[str, ...]:
    return tuple(sorted(
        f.name.removesuffix(".yaml") for f in _folder().iterdir() if f.name.endswith(".yaml")
    ))


class SearchContext:
    """The running search, for a sampler that plans with it: a sampler config that declares
    `context: ???` receives this (the frontier sampler composes candidates' configs and
    reads earlier runs from the store). A plain class on purpose: Hydra's instantiate would
    turn a dataclass argument into a config node."""

    def __init__(self, *, sweeper: Any, space: Any, store: Any) -> None:
        self.sweeper = sweeper
        self.space = space
        self.store = store


def make_sampler(
    name: str, *, seed: int | None, population_size: int, context: SearchContext | None = None
) -> Any:
    """The Optuna sampler that conf/hydra/sweeper/sampler/<name>.yaml describes."""
    from hydra.utils import instantiate

    declared = OmegaConf.create(_folder().joinpath(f"{name}.yaml").read_text())
    wants_context = "context" in list(declared.keys())  # `in` alone skips a ??? value
    if wants_context:
        if context is None:
            raise ConfigError(f"hydra.sweeper.sampler={name} plans with the search itself; "
                              "it runs only inside hydra/sweeper=pareto")
        del declared["context"]
    node = OmegaConf.create({"seed": seed, "population_size": population_size,
                             "sampler": declared})
    return instantiate(node.sampler, **({"context": context} if wants_context else {}))
