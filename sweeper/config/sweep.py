"""Which sweep a job belongs to, and where it was launched from.

All jobs of one multirun (or search) share one sweep row. The sweep name comes from
`sweeper.name`, else from the callback that saw the whole command line (passed to
jobs through SWEEPER_SWEEP_NAME, which launchers in other processes inherit), else
from the job's own overrides.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from sweeper.config.spec import RunSpec
from sweeper.config.storage import launch_dir
from sweeper.redact import mask_overrides, mask_secrets

SWEEP_NAME_ENV = "SWEEPER_SWEEP_NAME"
SWEEP_KIND_ENV = "SWEEPER_SWEEP_KIND"
SWEEP_COMMAND_ENV = "SWEEPER_SWEEP_COMMAND"
_IGNORED_PREFIXES = ("hydra.", "hydra/", "sweeper.", "storage.")
_MAX_NAME = 160


@dataclass(frozen=True)
class SweepContext:
    name: str
    kind: str  # grid | search | single
    command: str  # the overrides that define the sweep
    overrides: str  # this job's own overrides
    sweep_dir: str | None
    base_dir: str  # the directory the command was launched from
    resume: bool


@dataclass(frozen=True)
class SweepIdentity:
    """What every job of one multirun or search shares. The process that sees the whole
    command line announces it; jobs (in this process, a launcher's worker, or a Slurm node
    that got it through the Hydra callback) read it back with announced()."""

    name: str
    kind: str  # grid | search
    command: str  # masked overrides

    def env(self) -> dict[str, str]:
        return {SWEEP_NAME_ENV: self.name, SWEEP_KIND_ENV: self.kind,
                SWEEP_COMMAND_ENV: self.command}


def announce(identity: SweepIdentity) -> None:
    os.environ.update(identity.env())


def announced() -> SweepIdentity | None:
    name = os.environ.get(SWEEP_NAME_ENV)
    if not name:
        return None
    return SweepIdentity(name, os.environ.get(SWEEP_KIND_ENV, "grid"),
                         os.environ.get(SWEEP_COMMAND_ENV, ""))


def identity_for(kind: str, overrides: Sequence[str], name: str | None = None) -> SweepIdentity:
    """The identity of a sweep launched with `overrides` (`name`: sweeper.name, if set)."""
    return SweepIdentity(
        name or sweep_name_from_overrides(overrides, prefix=kind), kind,
        mask_overrides(overrides),
    )


def sweep_name_from_overrides(overrides: Sequence[str], prefix: str = "sweep") -> str:
    """A readable, deterministic name: the same command gives the same sweep."""
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(_IGNORED_PREFIXES))
    text = mask_overrides(kept) or "defaults"
    name = f"{prefix}: {text}"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 13]}... {digest}"
    return name


def current_sweep(spec: RunSpec) -> SweepContext:
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        overrides = list(hc.overrides.task)
        sweep_dir = str(hc.sweep.dir) if multirun else None
    else:
        multirun, overrides, sweep_dir = False, [], None
    shared = announced() if multirun else None
    kind = (shared.kind if shared else "grid") if multirun else "single"
    if spec.sweeper.name:
        name = spec.sweeper.name
    elif shared is not None:
        name = shared.name
    elif multirun:
        name = f"sweep: {sweep_dir}"
    else:
        name = "single runs"
    return SweepContext(
        name=name,
        kind=kind,
        command=mask_secrets(shared.command if shared else " ".join(overrides)),
        overrides=mask_overrides(overrides),  # stored per run: no password
        sweep_dir=sweep_dir,
        base_dir=str(launch_dir()),
        # A lone run is measured every time; sweeps (or a named sweep) resume.
        resume=spec.sweeper.resume and (multirun or spec.sweeper.name is not None),
    )
