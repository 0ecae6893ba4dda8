"""`python -m sweeper`: a Hydra app whose every job is one measured training run.

python -m sweeper -m model=resnet,vit batch=32,128
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

import hydra
from omegaconf import DictConfig

from sweeper import _threads  # noqa: F401  (first: OpenMP's waiting before torch loads)
from sweeper.errors import USER_ERROR_EXIT, USER_ERRORS, ConfigError, exit_with_user_error
from sweeper.redact import install_stream_redaction, owner_only_files, take_passwords

# Nothing here imports torch, Optuna or SQLAlchemy at module level: `--help` and
# `--version` answer without them (benchmarks/startup.py); a job imports them when it runs.

if TYPE_CHECKING:
    from sweeper.run.result import JobResult

log = logging.getLogger("sweeper")


@hydra.main(version_base="1.3", config_path="pkg://sweeper.conf", config_name="config")
def app(cfg: DictConfig) -> JobResult:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweeper.app.callbacks import LAST_SWEEP, discard_refused_run_dir, summarise_runs
    from sweeper.run.job import run_job  # torch and the data sets: only once a job runs

    try:
        result = run_job(cfg)
    except USER_ERRORS as exc:
        if HydraConfig.get().mode == RunMode.RUN:
            discard_refused_run_dir(HydraConfig.get().job.name)
        exit_with_user_error(exc)
    if result.run_id is None and result.status == "completed":
        return result  # a torchrun rank other than 0: rank 0 reports the run
    if result.status == "completed":
        val = result.val_accuracy is not None  # none with dataset.val_fraction=0
        log.info(
            "run %s completed: %s acc %.3f, E_tr %.1f J, E_in %.2f J (%s)",
            result.run_id,
            "val" if val else "test",
            (result.val_accuracy if val else result.test_accuracy) or 0.0,
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


def _move_passwords_to_the_environment() -> None:
    """Take a password typed into the command line (`storage.url=postgresql://u:PW@host/db`,
    `hydra.sweeper.storage=...`) out of it before Hydra reads it, and hand it to the store
    as SWEEPER_DB_PASSWORD, which the jobs inherit (submitit's local processes; Slurm's
    sbatch exports the environment by default). Hydra's saved configs, logs and error lines
    and the launchers' pickled jobs then never hold it."""
    args, passwords = take_passwords(sys.argv[1:])
    if not passwords:
        return
    given = os.environ.get("SWEEPER_DB_PASSWORD")
    if len(passwords) > 1 or (given and given not in passwords):
        exit_with_user_error(ConfigError(
            "the command line holds a database password that differs from another one (or "
            "from SWEEPER_DB_PASSWORD); give each server's password in ~/.pgpass instead"
        ))
    os.environ["SWEEPER_DB_PASSWORD"] = passwords.pop()
    sys.argv[1:] = args
    print(
        "sweeper: warning: a database password was typed on the command line: it stays in "
        "your shell history. sweeper removed it from the command and passes it to its jobs as "
        "SWEEPER_DB_PASSWORD, so nothing it writes holds it; prefer SWEEPER_DB_PASSWORD, "
        "PGPASSWORD or ~/.pgpass (see README, Scaling out)",
        file=sys.stderr,
    )


def _refuse_unquoted_non_ascii() -> None:
    """Hydra's override grammar reads non-ASCII characters only inside quotes and reports
    an unquoted one as a lexer error; say which override to quote, and how."""
    for arg in sys.argv[1:]:
        if arg.startswith("-") or arg.isascii() or "=" not in arg:
            continue
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import OverrideParseException

        try:
            OverridesParser.create().parse_overrides([arg])
        except OverrideParseException:
            key, value = arg.split("=", 1)
            quoted = f"'{key}=\"{value}\"'" if '"' not in value else f'"{key}=\'{value}\'"'
            exit_with_user_error(ConfigError(
                f"the override {arg!r} holds non-ASCII characters, which Hydra reads only "
                f"inside quotes: quote the value (each value of a list), e.g. {quoted} "
                "(the outer quotes are for the shell)"
            ))


def _check_the_command_line() -> None:
    """Every override checked against the schema, each refusal one line, before Hydra
    composes (its own errors about keys and types take several lines)."""
    if "--hydra-help" in sys.argv:
        return
    from sweeper.app.command_line import app_help, check_command_line

    if "--help" in sys.argv or "-h" in sys.argv:
        print(app_help())
        sys.exit(0)

    try:
        check_command_line(sys.argv[1:])
    except ConfigError as exc:
        exit_with_user_error(exc)


# How long a launcher stopped by SIGTERM gives its jobs to record their runs as interrupted.
JOB_GRACE_S = 30.0


def _stop_jobs_on_sigterm() -> None:
    """SIGTERM while no run is measuring in this process (a launcher waiting for its
    submitit_local jobs, or between two runs): pass it on to the processes this one started,
    so their runs are recorded as interrupted and none keeps running once the command has
    exited 143; those still alive after JOB_GRACE_S are killed. During a run,
    sweeper.run.recording's own handler is in place instead."""

    def handler(signum: int, _frame: object) -> None:
        import psutil  # here: not on every command's start

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
        children = psutil.Process().children()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signum)
        _, alive = psutil.wait_procs(children, timeout=JOB_GRACE_S if children else 0)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                for process in [*child.children(recursive=True), child]:
                    process.kill()
        from sweeper.run.recording import RunInterrupted

        raise RunInterrupted(f"received signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    """Exit status: 0 done; 1 a run of a grid failed; 2 bad input (sweeper's checks or
    Hydra's), before anything ran; 130 / 143 interrupted by Ctrl-C / SIGTERM."""
    if "--version" in sys.argv[1:]:  # Hydra's own flag would print only Hydra's version
        print(versions())
        return
    owner_only_files()
    install_stream_redaction()
    _move_passwords_to_the_environment()
    _refuse_unquoted_non_ascii()
    _check_the_command_line()
    _stop_jobs_on_sigterm()
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
