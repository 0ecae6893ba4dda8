"""Samplers as configs: each conf/hydra/sweeper/sampler/<name>.yaml names an Optuna sampler as
`_target_` (the pattern of Hydra's own Optuna sweeper plugin), so adding a sampler is adding
a file, and `hydra.sweeper.sampler=<name>` picks one. `${seed}` and `${population_size}`
in a file come from the search's settings.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from omegaconf import OmegaConf

SAMPLER_CONFIGS = ("hydra", "sweeper", "sampler")  # inside the sweeper.conf package


def _folder() -> Any:
    return resources.files("sweeper.conf").joinpath(*SAMPLER_CONFIGS)


def sampler_names() -> tuple[str, ...]:
    return tuple(sorted(
        f.name.removesuffix(".yaml") for f in _folder().iterdir() if f.name.endswith(".yaml")
    ))


def make_sampler(name: str, *, seed: int | None, population_size: int) -> Any:
    """The Optuna sampler that conf/hydra/sweeper/sampler/<name>.yaml describes."""
    from hydra.utils import instantiate

    node = OmegaConf.create({
        "seed": seed, "population_size": population_size,
        "sampler": OmegaConf.create(_folder().joinpath(f"{name}.yaml").read_text()),
    })
    return instantiate(node.sampler)
