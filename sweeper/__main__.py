"""`python -m sweeper`: a Hydra app whose every job is one measured training run.

python -m sweeper -m model=resnet,vit batch=32,128
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import TYPE_CHECKING, NoReturn

import hydra
from omegaconf import DictConfig

from sweeper import _threads  # noqa: F401  (first: OpenMP's waiting before torch loads)
from sweeper.errors import USER_ERROR_EXIT, USER_ERRORS, exit_with_user_error

# Nothing here imports torch, Optuna or SQLAlchemy at module level: `--help` and
# `--version` answer without them (benchmarks/startup.py); a job imports them when it runs.

if TYPE_CHECKING:
    from sweeper.run.result import JobResult

log = logging.getLogger("sweeper")


@hydra.main(version_base="1.3", config_path="pkg://sweeper.conf", config_name="config")
def app(cfg: DictConfig) -> JobResult:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweeper.app.callbacks import LAST_SWEEP, summarise_runs
    from sweeper.run.job import run_job  # torch and the data sets: only once a job runs

    try:
        result = run_job(cfg)
    except USER_ERRORS as exc:
        exit_with_user_error(exc)
    if result.run_id is None and result.status == "completed":
        return result  # a torchrun rank other than 0: rank 0 reports the run
    if result.status == "completed":
        log.info(
            "run %s completed: val acc %.3f, E_tr %.1f J, E_in %.2f J (%s)",
            result.run_id,
            result.val_accuracy or 0.0,
            result.energy_train_j or 0.0,
            result.energy_inference_j or 0.0,
            result.meter_source,
        )
    elif result.status in ("forecast", "estimate"):
        pass  # the mode printed its own table
    elif result.status not in ("skipped", "pruned", "failed"):  # those: logged by the job
        log.error("run %s %s: %s", result.run_id, result.status, result.error)
    if HydraConfig.get().mode == RunMode.RUN and result.run_id is not None:
        summarise_runs(cfg, [result.run_id], title=f"run {result.run_id}")
        if result.status == "failed":
            LAST_SWEEP.update(runs=1, failed=1)
    return result


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's module teardown.

    After Ctrl-C or a pre-emption the run is already recorded; tearing down torch,
    torchvision and scikit-learn then takes 1-2 s on an idle CPU and several on a loaded
    node, while the scheduler's grace period runs. atexit handlers (log files) still run.
    """
    from sweeper.store.db import dispose_stores

    dispose_stores()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _is_usage_error(exc: SystemExit) -> bool:
    """Hydra reports a bad override or config (parse, composition, unknown key) by printing
    it and calling sys.exit(1) inside its handler, so the error is the exit's context."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return exc.code == 1 and isinstance(exc.__context__, HydraException | OmegaConfBaseException)


def versions() -> str:
    """sweeper's version, then the versions of the libraries that shape its results."""
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    from sweeper import __version__

    libraries = ", ".join(f"{label} {of(name)}" for label, name in (
        ("torch", "torch"), ("Hydra", "hydra-core"), ("Optuna", "optuna"),
        ("SQLAlchemy", "sqlalchemy")))
    return f"sweeper {__version__}\n{libraries}"


def main() -> None:
    """Exit status: 0 done; 1 a run of a grid failed; 2 bad input (sweeper's checks or
    Hydra's), before anything ran; 130 / 143 interrupted by Ctrl-C / SIGTERM."""
    if "--version" in sys.argv[1:]:  # Hydra's own flag would print only Hydra's version
        print(versions())
        return
    try:
        app()
    except SystemExit as exc:
        if _is_usage_error(exc):
            sys.exit(USER_ERROR_EXIT)
        raise
    except KeyboardInterrupt as exc:  # the job has already recorded its run as interrupted
        from sweeper.run.recording import RunInterrupted

        print(
            f"sweeper: interrupted ({str(exc) or 'Ctrl-C'}); finished runs are kept, and running "
            "a sweep's command again resumes it",
            file=sys.stderr,
        )
        _exit_now(143 if isinstance(exc, RunInterrupted) else 130)  # 128 + SIGTERM / SIGINT
    from sweeper.app.callbacks import LAST_SWEEP

    failed = LAST_SWEEP.get("failed", 0)
    if failed:
        print(
            f"{failed} of {LAST_SWEEP['runs']} run(s) failed; see the table above", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
