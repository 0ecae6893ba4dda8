"""The ``energy/meter`` config group: one YAML file per meter, so a new meter is one module
plus one YAML file (``conf/energy/meter/<name>.yaml``, nothing else to change).

A file with ``_target_`` is a meter, built with ``hydra.utils.instantiate``; a file with
``tries`` is a composition of the group's meters (``auto``, see sweeper.energy.select). A
meter takes from the run the values its constructor names (``gpu_indices``, ``nvml``,
``powercap_root``, ``cpu_tdp_w``); the run's value wins over the YAML's, and an absent
(None) one leaves the YAML's or the constructor's default.

The group is read where Hydra reads configs: the running app's config search path when there
is one, first source first as Hydra resolves a group option (so ``--config-dir DIR`` or a
SearchPathPlugin can add or replace a meter with ``DIR/energy/meter/<name>.yaml``), and
always the installed ``sweeper.conf`` last. ``hydra.searchpath`` is not read: Hydra applies it
to one composition only, so the checks made before the job starts could not see it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from sweeper.energy.types import Meter

GROUP = ("energy", "meter")
PACKAGE = "sweeper.conf"


# Config folders named on the command line (--config-dir), for the checks sweeper makes
# before Hydra has read them (sweeper.app.command_line); Hydra's own search path later.
_COMMAND_LINE_DIRS: list[Path] = []


@contextmanager
def command_line_dirs(dirs: Sequence[str]) -> Iterator[None]:
    """Read the group from these folders too, first, while the block runs."""
    _COMMAND_LINE_DIRS[:0] = [Path(d) for d in dirs]
    try:
        yield
    finally:
        del _COMMAND_LINE_DIRS[:len(dirs)]


def config_roots() -> list[Traversable]:
    """Where Hydra reads config groups, first source first: the command line's
    --config-dir folders while it is checked, the running Hydra app's config search path
    (file and pkg sources), then sweeper's (this group's and the command line's checks)."""
    roots: list[Traversable] = list(_COMMAND_LINE_DIRS)
    sources: list[Any] = []
    try:
        from hydra.core.global_hydra import GlobalHydra

        if GlobalHydra.instance().is_initialized():
            sources = list(GlobalHydra.instance().config_loader().get_sources())
    except Exception:  # outside a Hydra app (library use, tests): sweeper's own group only
        sources = []
    for source in sources:
        try:
            if source.scheme() == "file":
                roots.append(Path(source.path))
            elif source.scheme() == "pkg" and source.path != PACKAGE:
                roots.append(files(source.path))
        except (ModuleNotFoundError, TypeError):  # a source that is not a folder
            continue
    roots.append(files(PACKAGE))
    return roots


def entries() -> dict[str, Traversable]:
    """Each option of the group -> its YAML file (the first source that has it)."""
    found: dict[str, Traversable] = {}
    for root in config_roots():
        folder = root.joinpath(*GROUP)
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            name = path.name.removesuffix(".yaml")
            if path.name.endswith(".yaml") and "+" not in name:
                found.setdefault(name.lower(), path)
    return found


@lru_cache(maxsize=64)
def _parse(text: str) -> Any:
    """A YAML text as a read-only DictConfig: the files are re-read on every use (cheap) so an
    edit counts, but each text is parsed once (a `meter=` check runs per job)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(text)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def load(name: str) -> Any:
    """The option's YAML as a read-only DictConfig; ValueError if it is neither a meter nor
    a composition (said when it is used, so one broken file does not block every check)."""
    path = entries().get(name)
    if path is None:
        raise ValueError(f"no energy/meter/{name}.yaml on the config search path")
    cfg = _parse(path.read_text())
    if "_target_" not in cfg and "tries" not in cfg:
        raise ValueError(f"energy/meter/{name}.yaml has neither _target_ (a meter) nor "
                         "tries (a composition of meters)")
    return cfg


def names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(compositions, meters): compositions by name, then meters in the order the
    compositions try them (stand-ins after what they stand in for), then the rest by name."""
    loaded = {name: _parse(path.read_text()) for name, path in entries().items()}
    compositions = sorted(name for name, cfg in loaded.items() if "tries" in cfg)
    meters = [name for name in loaded if name not in compositions]
    ordered: list[str] = []
    for comp in compositions:
        for entry in loaded[comp].tries:
            for name in (entry.get("meter"), entry.get("stand_in")):
                if name in meters and name not in ordered:
                    ordered.append(name)
    return tuple(compositions), (*ordered, *sorted(set(meters) - set(ordered)))


def open_meter(name: str, run: Mapping[str, Any]) -> Meter:
    """Instantiate the meter ``name`` with the run's values its constructor names."""
    from hydra.utils import instantiate

    factory = instantiate(load(name), _partial_=True)
    takes = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in run.items() if v is not None and k in takes})
