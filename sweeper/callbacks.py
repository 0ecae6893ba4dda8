"""Hydra callback: checks a whole grid before its first job, names the sweep, and
prints the summary table at the end."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweeper.errors import USER_ERRORS, exit_with_user_error
from sweeper.liveness import reclaim_vanished_runs
from sweeper.redact import (
    has_secret,
    install_log_redaction,
    mask_overrides,
    scrub_hydra_outputs,
    scrub_sweep_dir,
)
from sweeper.spec import build_spec
from sweeper.store import open_store
from sweeper.store import runs as store_runs
from sweeper.store.db import resolve_url
from sweeper.store.optuna_schema import prepare_optuna_schema
from sweeper.summary import print_sweep
from sweeper.sweepinfo import SWEEP_KIND_ENV, SWEEP_NAME_ENV, sweep_name_from_overrides

log = logging.getLogger(__name__)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"

# Outcome of the last multirun in this process, for the exit status.
LAST_SWEEP: dict[str, int] = {}


def grid_job_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper will launch."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    # As BasicSweeper does: the config's hydra.sweeper.params (a preset's grid) first,
    # then the command line's overrides.
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def validate_grid(config: DictConfig) -> int:
    """Compose and validate every job of a grid before any of them trains."""
    from sweeper.device import check_precision, resolve_device
    from sweeper.energy import carbon_intensity
    from sweeper.spec import ConfigError

    loader = GlobalHydra.instance().config_loader()
    jobs = grid_job_overrides(config)
    checked_devices: set[tuple[str, str]] = set()
    for overrides in jobs:
        job_cfg = loader.load_sweep_config(config, list(overrides))
        try:
            spec = build_spec(job_cfg)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in job: {' '.join(overrides)})") from None
        if (spec.device, spec.precision) not in checked_devices:
            check_precision(spec.precision, resolve_device(spec.device))
            checked_devices.add((spec.device, spec.precision))
        try:
            carbon_intensity(spec.country, spec.region)
        except ValueError as exc:
            raise ConfigError(f"invalid value for 'energy.country': {exc}") from None
    return len(jobs)


class SweepCallback(Callback):
    # The sweep's name, kind and command for its jobs. Launchers such as submitit pickle
    # this callback into each job (on another node under Slurm), and on_job_start puts
    # them back into the job's environment even where the launcher's own is not inherited.
    job_env: dict[str, str] | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guard_secrets(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guard_secrets(config)
        task = list(config.hydra.overrides.task)
        is_grid = OmegaConf.select(config, "hydra.sweeper._target_") == BASIC_SWEEPER
        kind = "grid" if is_grid else "search"
        os.environ[SWEEP_KIND_ENV] = kind
        os.environ[SWEEP_NAME_ENV] = sweep_name_from_overrides(task, prefix=kind)
        os.environ["SWEEPER_SWEEP_COMMAND"] = mask_overrides(task)
        self.job_env = {
            k: os.environ[k] for k in (SWEEP_KIND_ENV, SWEEP_NAME_ENV, "SWEEPER_SWEEP_COMMAND")
        }
        try:
            if is_grid:
                count = validate_grid(config)
                log.info("validated %d job(s) of sweep %r", count, os.environ[SWEEP_NAME_ENV])
            spec = build_spec(config)
            # An unreachable or foreign database is refused here, before any job starts.
            open_store(spec.storage_url, base_dir=config.hydra.runtime.cwd)
            if "sweeper_pareto" in str(OmegaConf.select(config, "hydra.sweeper._target_")):
                # Workers started together on a fresh database race to create the study's
                # tables; settle that before the search opens the study.
                study_url = OmegaConf.select(config, "hydra.sweeper.storage") or spec.storage_url
                prepare_optuna_schema(resolve_url(study_url, config.hydra.runtime.cwd))
        except (*USER_ERRORS, ConfigCompositionException) as exc:
            exit_with_user_error(exc)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.update(self.job_env or {})
        install_log_redaction()  # in the job's process (a submitit job starts a new one)
        if config.hydra.output_subdir is not None:
            scrub_hydra_outputs(
                Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir),
                config.hydra.sweep.dir if self.job_env else None,
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        scrub_sweep_dir(config.hydra.sweep.dir, config.hydra.overrides.task)
        spec = build_spec(config)
        name = spec.sweep_name or os.environ.get(SWEEP_NAME_ENV)
        if name:
            self._summarise(spec.storage_url, config.hydra.runtime.cwd, name)

    def _summarise(self, url: str, base_dir: str, name: str) -> None:
        store = open_store(url, base_dir=base_dir)
        sweep = store_runs.find_sweep(store, name)
        if sweep is None:
            return
        reclaim_vanished_runs(store, sweep.id)
        runs = store_runs.sweep_runs(store, sweep.id)
        # A resumed sweep's outcome is each configuration's latest attempt (runs are in id
        # order): a failure fixed by a rerun no longer fails the command.
        latest = list({r.config_hash: r for r in runs}.values())
        LAST_SWEEP.clear()
        # In a search, failed trials (a diverging lr, say) are part of the exploration;
        # in a grid every configuration was asked for, so a failure fails the command.
        is_grid = os.environ.get(SWEEP_KIND_ENV, "grid") == "grid"
        LAST_SWEEP.update(
            runs=len(latest),
            failed=sum(r.status == "failed" for r in latest) if is_grid else 0,
            interrupted=sum(r.status == "interrupted" for r in latest),
        )
        print_sweep(f"sweep {name!r} ({store.display_url})", runs)


def _guard_secrets(config: DictConfig) -> None:
    """Mask passwords in every log line from now on, and say where one should live."""
    install_log_redaction()
    if any(has_secret(str(o)) for o in config.hydra.overrides.task):
        log.warning(
            "a database password was given on the command line: it is now in your shell "
            "history and in the job files launchers write (e.g. .submitit/). sweeper masks it "
            "in logs, saved configs and the database; prefer SWEEPER_DB_PASSWORD, PGPASSWORD "
            "or ~/.pgpass (see README, Scaling out)"
        )


def summarise_runs(config: DictConfig, run_ids: list[int], title: str) -> None:
    spec = build_spec(config)
    store = open_store(spec.storage_url, base_dir=config_base_dir(config))
    runs = [r for r in (store_runs.get_run(store, i) for i in run_ids) if r is not None]
    print_sweep(f"{title} ({store.display_url})", runs)


def config_base_dir(config: DictConfig) -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()
