"""The search loop behind `hydra/sweeper=pareto`: ask Optuna for trials, launch them as
Hydra jobs through the configured launcher, and tell Optuna what each run measured.

Each trial's job gets `++trial=N` (stored as Run.trial_number); when a limit applies,
`++sweeper.max_energy_train_j=J` for the early-stopping rule in sweeper/run/stopping.py;
with hydra.sweeper.inference=front, `++sweeper.inference_front=[[acc, J], ...]`, the front
so far, which lets a dominated trial skip its inference benchmark
(sweeper/run/inference_gate.py). Trial user attributes link back to the run row.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from sweeper.config.spec import check_name, outage_s
from sweeper.config.storage import check_url, open_results, resolve_storage, study_url
from sweeper.config.sweep import announce, announced, identity_for
from sweeper.errors import StoreUnavailable
from sweeper.run.inference_gate import FRONT_KEY
from sweeper.run.liveness import why_vanished
from sweeper.run.stopping import LIMIT_KEY, REASON_KEY
from sweeper.search.front_table import print_front
from sweeper.search.frontier import sampler_stop_reason, tighter_limit
from sweeper.search.hypervolume import pareto_front
from sweeper.search.orphans import claim, fail_orphaned_trials
from sweeper.search.samplers import SearchContext
from sweeper.search.settings import SearchSettings, settings_from
from sweeper.search.space import SearchSpace, format_value, parse_space
from sweeper.search.study import (
    Outcome,
    TrialLimit,
    default_study_name,
    open_study,
    optuna_storage,
    outcome_of_run,
    spent_energy_j,
    trial_energy_limit,
)
from sweeper.store import Run, Store
from sweeper.store import runs as store_runs
from sweeper.store.schema import NAME_LENGTH, utcnow

log = logging.getLogger("sweeper.search")

STOP_REASON_ATTR = "stop_reason"
TWIN_POLL_S = 1.0  # how often a trial left to a twin run looks whether it has ended


def sweep_name(config: DictConfig, arguments: Sequence[str]) -> str:
    """The sweep the jobs will record into: sweeper.name, else the callback's name (set
    before the sweeper starts), else one derived from the command line."""
    shared = announced()
    name = OmegaConf.select(config, "sweeper.name") or (shared.name if shared else None)
    return identity_for("search", arguments, name).name


def job_overrides(
    space: SearchSpace, trial: Trial, limit: TrialLimit | None,
    front: Sequence[tuple[float, float]] | None = None,
) -> list[str]:
    overrides = [*space.overrides(trial.params), f"++trial={trial.number}"]
    if limit is not None:
        overrides += [
            f"++sweeper.{LIMIT_KEY}={format_value(round(limit.limit_j, 3))}",
            f"++sweeper.{REASON_KEY}={format_value(limit.reason)}",
        ]
    if front is not None:  # exact values (repr): a trial equal to a front point is not
        # dominated. An empty front is sent too: it tells the job that E_in is not needed
        # for this trial's objective, so it may reuse a run that skipped its benchmark.
        points = ",".join(f"[{format_value(a)},{format_value(e)}]" for a, e in front)
        overrides.append(f"++sweeper.{FRONT_KEY}=[{points}]")
    return overrides


def front_so_far(trials: Sequence[FrozenTrial]) -> list[tuple[float, float]]:
    """The completed trials' front (val accuracy, objective), cheapest first."""
    return pareto_front([
        (float(t.values[0]), float(t.values[1]))
        for t in trials if t.state == TrialState.COMPLETE and t.values is not None
    ])


def outcome_of_job(ret: JobReturn, store: Store, objective: str) -> Outcome:
    try:
        result = ret.return_value  # re-raises what the job raised
    except Exception as exc:
        return Outcome(TrialState.FAIL, None, {"error": f"{type(exc).__name__}: {exc}"[:1000]})
    run_id = getattr(result, "run_id", None)
    if run_id is None:
        return Outcome(TrialState.FAIL, None, {"error": f"job returned {result!r}"})
    skipped = getattr(result, "status", "") == "skipped"
    run = await_twin(store, run_id) if skipped else store_runs.get_run(store, run_id)
    return outcome_of_run(run, objective, reused=skipped)


def await_twin(store: Store, run_id: int, poll_s: float = TWIN_POLL_S) -> Run | None:
    """The row of the run a skipped trial's job left to a twin (another process of the
    sweep training the same config), once that run has ended or vanished: the trial takes
    its values instead of failing for a run it did not make."""
    waited = False
    while True:
        run = store_runs.get_run(store, run_id)
        if run is None or run.status != "running":
            return run
        if why_vanished(run, socket.gethostname(), utcnow()) is not None:
            return run  # its process is gone: the trial fails with the run's status
        if not waited:
            waited = True
            log.info("run %d of the same config is running in pid %s on %s: waiting for it",
                     run_id, run.pid, run.host)
        time.sleep(poll_s)


class SearchLoop:
    """One invocation of a search: n_trials new trials, or fewer if the budget runs out."""

    def __init__(self, sweeper: Any, settings: SearchSettings, arguments: Sequence[str]):
        self.sweeper = sweeper
        self.settings = settings
        config: DictConfig = sweeper.config
        self.config = config
        self.space = parse_space(settings.params, arguments)
        if not self.space.distributions:
            log.warning("the search space is empty: every trial runs the same config")
        app_url = check_url(OmegaConf.select(config, "storage.url"))
        self.store = open_results(app_url, outage_s(config))  # storage.outage_s, as the jobs
        self.sweep_name = sweep_name(config, arguments)
        # Jobs (in this process or a launcher's) record into the same sweep.
        announce(identity_for("search", arguments, self.sweep_name))
        self.study_name = settings.study_name or default_study_name(
            self.sweep_name, settings.objective
        )
        if settings.study_name:
            check_name("hydra.sweeper.study_name", self.study_name)
        else:  # the study is named after the sweep, with the objective added
            suffix = len(self.study_name) - len(self.sweep_name)
            check_name("sweeper.name", self.sweep_name, NAME_LENGTH - suffix,
                       f"; the study's name adds {suffix} for its objective")
        store_runs.ensure_sweep(
            self.store, self.sweep_name, kind="search", command=" ".join(arguments),
            sweep_dir=str(config.hydra.sweep.dir), study_name=self.study_name,
        )
        storage_url = resolve_storage(study_url(config))
        self.study = open_study(
            settings, optuna_storage(storage_url, self.store.outage_s), self.study_name,
            SearchContext(sweeper=sweeper, space=self.space, store=self.store),
        )
        self.study.set_user_attr("sweep_name", self.sweep_name)
        self.study.set_user_attr("objective", settings.objective)
        self.app_limit_j = OmegaConf.select(config, f"sweeper.{LIMIT_KEY}")

    def run(self) -> list[Sequence[JobReturn]]:
        settings, study = self.settings, self.study
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        fail_orphaned_trials(study, self.store, self.sweep_name)
        before = len(study.trials)
        log.info(
            "study %r (%d trial(s) so far): %d new trial(s), sampler %s, objectives "
            "val_accuracy (max) and %s (min)",
            self.study_name, before, settings.n_trials, settings.sampler, settings.objective,
        )
        returns: list[Sequence[JobReturn]] = []
        launched = 0
        stop_reason = f"n_trials={settings.n_trials} reached"
        while launched < settings.n_trials:
            trials = study.get_trials(deepcopy=False)
            spent = spent_energy_j(trials)
            budget = settings.energy_budget_j
            if budget is not None and spent >= budget:
                stop_reason = f"energy budget reached: {spent:.1f} J spent of {budget:.1f} J"
                break
            reason = sampler_stop_reason(study)
            if reason:
                stop_reason = reason
                break
            size = min(settings.n_jobs, settings.n_trials - launched)
            limit = trial_energy_limit(settings, trials, size, self.app_limit_j)
            returns.append(self._launch_batch(size, limit, launched))
            launched += size
        study.set_user_attr(STOP_REASON_ATTR, stop_reason)
        counts = _count_states(study.get_trials(deepcopy=False)[before:])
        log.info("search stopped: %s; this invocation: %s", stop_reason, counts)
        if settings.print_front:
            print_front(study, settings.objective, store_url=self.store.display_url)
        return returns

    def _launch_batch(
        self, size: int, limit: TrialLimit | None, job_idx: int
    ) -> Sequence[JobReturn]:
        study = self.study
        trials = [study.ask(self.space.distributions) for _ in range(size)]
        for trial in trials:
            claim(trial)
        front = (front_so_far(study.get_trials(deepcopy=False))
                 if self.settings.skips_dominated_inference else None)
        batch = [job_overrides(self.space, t, tighter_limit(limit, t.user_attrs), front)
                 for t in trials]
        try:
            self.sweeper.validate_batch_is_legal(batch)
            results = self.sweeper.launcher.launch(batch, initial_job_idx=job_idx)
        except BaseException as exc:  # a user error or an interrupt ends the search
            if not _store_gone(exc):  # the study is unreachable too: nothing to tell it
                for trial in trials:
                    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
                    study.tell(trial, state=TrialState.FAIL)
            raise
        for trial, ret in zip(trials, results, strict=True):
            outcome = outcome_of_job(ret, self.store, self.settings.objective)
            if tell_outcome(study, trial, outcome):
                _log_outcome(trial.number, outcome)
        return results


def _store_gone(exc: BaseException) -> bool:
    """Whether a job ended because the store stayed unreachable past storage.outage_s (the
    job's own error, or the exit it printed its one line for). Its trials are left RUNNING:
    the next command of the search fails them as orphans and runs on."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StoreUnavailable):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def tell_outcome(study: optuna.Study, trial: Trial, outcome: Outcome) -> bool:
    """Tell Optuna what the trial's run measured; False if the trial was already finished
    (another worker judged it orphaned while this one was slow to tell)."""
    try:
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, outcome.values, state=outcome.state)
    except (RuntimeError, ValueError) as exc:  # UpdateFinishedTrialError; "Cannot tell a ..."
        log.warning("trial %d was already finished elsewhere (%s); its run row is kept",
                    trial.number, exc)
        return False
    return True


def _log_outcome(number: int, outcome: Outcome) -> None:
    attrs = outcome.attrs
    run = attrs.get("run_id")
    if outcome.state == TrialState.COMPLETE:
        reused = " (reused a completed run)" if attrs.get("reused_run") else ""
        log.info("trial %d -> run %s: values %s%s", number, run, outcome.values, reused)
    else:
        why = attrs.get("stop_reason") or attrs.get("error") or ""
        log.info("trial %d -> run %s: %s %s", number, run, outcome.state.name, why)


def _count_states(trials: Sequence[Any]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials"


def run_search(sweeper: Any, arguments: Sequence[str]) -> list[Sequence[JobReturn]]:
    """Entry point of the plugin's sweep(); user errors end it in one line."""
    from sweeper.errors import USER_ERRORS, exit_with_user_error

    try:
        loop = SearchLoop(sweeper, settings_from(sweeper.settings), arguments)
        return loop.run()
    except USER_ERRORS as exc:  # a bad setting, or the store gone for longer than outage_s
        exit_with_user_error(exc)
