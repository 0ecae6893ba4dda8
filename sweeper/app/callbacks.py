"""Hydra callback: checks a whole grid before its first job, names the sweep, and
prints the summary table at the end."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweeper.app.grid_check import GridCheck, announce_large_grid, check_grid, check_job
from sweeper.app.summary import print_sweep
from sweeper.config.keys import usage_error
from sweeper.config.launch import is_main
from sweeper.config.spec import build_spec
from sweeper.config.storage import open_results, resolve_storage, study_url
from sweeper.config.sweep import announce, announced, identity_for
from sweeper.errors import (
    USER_ERRORS,
    StoreUnavailable,
    exit_with_user_error,
    invalid_value,
)
from sweeper.redact import (
    has_secret,
    install_log_redaction,
    scrub_hydra_outputs,
    scrub_sweep_dir,
)
from sweeper.run.estimate_files import clear_estimates, load_estimates
from sweeper.run.estimate_grid import print_grid
from sweeper.run.liveness import reclaim_vanished_runs
from sweeper.store import runs as store_runs
from sweeper.store.optuna_schema import prepare_optuna_schema

log = logging.getLogger(__name__)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
GRID_SWEEPERS = (BASIC_SWEEPER, "hydra_plugins.sweeper_grid.grid_sweeper.GridSweeper")

# Outcome of the last multirun in this process, for the exit status.
LAST_SWEEP: dict[str, int] = {}

# The folders Hydra is about to create for this process's single run (deepest first): a run
# refused inside its job removes them again (discard_refused_run_dir).
_NEW_RUN_DIRS: list[Path] = []


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


def validate_grid(config: DictConfig) -> GridCheck:
    """Compose and validate every job of a grid before any of them trains."""
    return check_grid(config, grid_job_overrides(config))


class SweepCallback(Callback):
    # The sweep's name, kind and command for its jobs. Launchers such as submitit pickle
    # this callback into each job (on another node under Slurm), and on_job_start puts
    # them back into the job's environment even where the launcher's own is not inherited.
    job_env: dict[str, str] | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guard_secrets(config)
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        _NEW_RUN_DIRS[:] = [d for d in (run_dir, *run_dir.parents) if not d.exists()]
        # Refused here, before Hydra creates the run's output folder: a command that does
        # no work leaves nothing behind.
        try:
            spec = check_job(config)
            # estimate only reads; under torchrun, rank 0 alone opens the store
            if spec.mode != "estimate" and is_main():
                open_results(spec.storage.url, spec.storage.outage_s)
        except (*USER_ERRORS, ConfigCompositionException) as exc:
            exit_with_user_error(usage_error(exc) or exc)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guard_secrets(config)
        task = list(config.hydra.overrides.task)
        is_grid = OmegaConf.select(config, "hydra.sweeper._target_") in GRID_SWEEPERS
        kind = "grid" if is_grid else "search"
        # The name the runs are stored under (sweeper.name when set), so the log says it.
        identity = identity_for(kind, task, OmegaConf.select(config, "sweeper.name"))
        announce(identity)
        self.job_env = identity.env()
        if OmegaConf.select(config, "mode") == "estimate":
            clear_estimates(config.hydra.sweep.dir)
        try:
            if is_grid:
                checked = validate_grid(config)
                log.info("validated %d job(s) of sweep %r", checked.jobs, identity.name)
                announce_large_grid(config, checked)
            spec = build_spec(config)
            if not is_grid and spec.dataset_options.get("val_fraction") == 0:
                # The search maximises validation accuracy: without a validation set every
                # trial would fail.
                raise invalid_value("dataset.val_fraction", 0, "a fraction in (0, 1) with a "
                                    "search (it maximises validation accuracy)")
            # An unreachable or foreign database is refused here, before any job starts.
            open_results(spec.storage.url, spec.storage.outage_s)
            if "sweeper_pareto" in str(OmegaConf.select(config, "hydra.sweeper._target_")):
                # Workers started together on a fresh database race to create the study's
                # tables; settle that before the search opens the study.
                prepare_optuna_schema(resolve_storage(study_url(config)))
        except (*USER_ERRORS, ConfigCompositionException) as exc:
            exit_with_user_error(usage_error(exc) or exc)

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
        if OmegaConf.select(config, "mode") == "estimate":  # nothing was run or stored
            print_grid(load_estimates(config.hydra.sweep.dir))
            return
        spec = build_spec(config)
        shared = announced()
        name = spec.sweeper.name or (shared.name if shared else None)
        if name:
            try:
                self._summarise(spec.storage.url, spec.storage.outage_s, name,
                                shared.kind if shared else "grid")
            except StoreUnavailable as exc:  # every run is recorded; only the table is lost
                exit_with_user_error(exc)

    def _summarise(self, url: str, outage_s: float, name: str, kind: str) -> None:
        store = open_results(url, outage_s)
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
        is_grid = kind == "grid"
        LAST_SWEEP.update(
            runs=len(latest),
            failed=sum(r.status == "failed" for r in latest) if is_grid else 0,
            interrupted=sum(r.status == "interrupted" for r in latest),
        )
        print_sweep(f"sweep {name!r} ({store.display_url})", runs)


def discard_refused_run_dir(job_name: str) -> None:
    """Remove what Hydra wrote for a single run that its job then refused (a missing
    database, say): its saved configs and log, and the folders this command created for
    them, if nothing else is in them. A command that did no work leaves nothing behind."""
    if not _NEW_RUN_DIRS:
        return
    run_dir = _NEW_RUN_DIRS[0]
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / name).unlink(missing_ok=True)
    (run_dir / f"{job_name}.log").unlink(missing_ok=True)
    for folder in (run_dir / ".hydra", *_NEW_RUN_DIRS):
        try:
            folder.rmdir()
        except OSError:  # not empty: something else was written there, keep it
            return


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
    store = open_results(spec.storage.url, spec.storage.outage_s)
    runs = [r for r in (store_runs.get_run(store, i) for i in run_ids) if r is not None]
    print_sweep(f"{title} ({store.display_url})", runs)

