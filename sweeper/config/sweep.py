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
from sweeper.redact import mask_overrides, mask_secrets

SWEEP_NAME_ENV = "SWEEPER_SWEEP_NAME"
SWEEP_KIND_ENV = "SWEEPER_SWEEP_KIND"
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
        base_dir = hc.runtime.cwd
        sweep_dir = str(hc.sweep.dir) if multirun else None
    else:
        multirun, overrides, base_dir, sweep_dir = False, [], os.getcwd(), None
    kind = os.environ.get(SWEEP_KIND_ENV, "grid") if multirun else "single"
    if spec.sweep_name:
        name = spec.sweep_name
    elif multirun and os.environ.get(SWEEP_NAME_ENV):
        name = os.environ[SWEEP_NAME_ENV]
    elif multirun:
        name = f"sweep: {sweep_dir}"
    else:
        name = "single runs"
    return SweepContext(
        name=name,
        kind=kind,
        command=mask_secrets(os.environ.get("SWEEPER_SWEEP_COMMAND", " ".join(overrides))),
        overrides=mask_overrides(overrides),  # stored per run: no password
        sweep_dir=sweep_dir,
        base_dir=base_dir,
        # A lone run is measured every time; sweeps (or a named sweep) resume.
        resume=spec.resume and (multirun or spec.sweep_name is not None),
    )
