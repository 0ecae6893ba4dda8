"""The Optuna side of a search: storage, sampler, study, and what a finished job tells it.

The study lives in the runs' database by default, so one SQLite file holds both and
optuna-dashboard opens it directly.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL

from sweeper.errors import ConfigError
from sweeper.run.inference_gate import skipped_inference
from sweeper.search.samplers import SearchContext, make_sampler
from sweeper.search.settings import ACCURACY, SearchSettings
from sweeper.store import Run
from sweeper.store.db import DEFAULT_OUTAGE_S, mask_url
from sweeper.store.outage import is_transient, ride_out

SQLITE_TIMEOUT_S = 60  # several workers writing one file wait instead of "database is locked"
SPENT_ATTR = "energy_spent_j"  # joules a trial newly spent (0 when it reused a run)
# Objectives bounded below by a run's training energy: a trial forecast to spend more on
# training than a trial at the accuracy target cannot beat it.
TRAIN_BOUNDED = ("energy_train_j", "energy_total_j")


@dataclass(frozen=True)
class _StudyDatabase:
    """The Optuna study's database, as riding out its outages needs to know it."""

    display_url: str
    outage_s: float
    is_sqlite: bool


class PatientStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose every call rides out an outage of its database as sweeper's
    own writes do (sweeper.store.outage): retried with backoff for `storage.outage_s`, then
    one line. A call whose commit landed before the connection dropped may run twice: a
    duplicate trial is left running and failed later as an orphan; a repeated tell is
    reported as already finished."""

    _patience: _StudyDatabase

    def __init__(self, url: URL, outage_s: float, **kwargs: Any) -> None:
        self._patience = _StudyDatabase(
            mask_url(url), outage_s, url.get_backend_name() == "sqlite")
        super().__init__(url.render_as_string(hide_password=False), **kwargs)


def _patient(name: str) -> Any:
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        def attempt(retry: bool) -> Any:
            try:
                return method(self, *args, **kwargs)
            except optuna.exceptions.StorageInternalError as exc:  # Optuna wraps the cause
                cause = exc.__cause__
                if cause is not None and is_transient(cause, self._patience):
                    raise cause from None
                raise

        return ride_out(self._patience, f"reach the Optuna study's database ({name})", attempt,
                        after="The study keeps every trial told before; running the same "
                              "command again resumes it.")

    return call


# Every call of the storage interface, and the private ones Optuna's cache in front of an
# RDBStorage makes (optuna.storages._cached_storage).
_CACHE_CALLS = ("_create_new_trial", "_get_best_trial_id", "_get_stale_trial_ids",
                "_get_trials", "_set_trial_param", "record_heartbeat")
for _name in (*dir(optuna.storages.BaseStorage), *_CACHE_CALLS):
    if (_name in _CACHE_CALLS or not _name.startswith("_")) and callable(
            getattr(optuna.storages.RDBStorage, _name, None)):
        setattr(PatientStorage, _name, _patient(_name))


def optuna_storage(url: URL, outage_s: float = DEFAULT_OUTAGE_S) -> PatientStorage:
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    else:
        kwargs["pool_pre_ping"] = True
    return PatientStorage(url, outage_s, engine_kwargs=kwargs)


def default_study_name(sweep_name: str, objective: str) -> str:
    """The sweep's name plus the objective: one sweep's runs can feed several studies."""
    return f"{sweep_name} [{objective}]"


def open_study(
    settings: SearchSettings, storage: optuna.storages.BaseStorage, name: str,
    context: SearchContext | None = None,
) -> optuna.Study:
    """Create the study, or load it to resume; refuse one made for another objective."""
    study = optuna.create_study(
        storage=storage, study_name=name, directions=["maximize", "minimize"],
        load_if_exists=True,
    )
    metrics = [ACCURACY, settings.objective]
    if study.metric_names is None:
        with warnings.catch_warnings():  # stable in practice; the dashboard shows the names
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metrics)
    elif list(study.metric_names) != metrics:
        raise ConfigError(
            f"study {name!r} optimises {study.metric_names}, not {metrics}; choose another "
            "hydra.sweeper.study_name (or the same objective) to resume it"
        )
    # Offset the seed by the trials already run, so a resumed study explores new points
    # instead of replaying the first invocation's sequence.
    seed = None if settings.seed is None else settings.seed + len(study.trials)
    study.sampler = make_sampler(settings.sampler_config, seed=seed, context=context)
    return study


@dataclass(frozen=True)
class Outcome:
    """What one job tells its trial."""

    state: TrialState
    values: tuple[float, float] | None
    attrs: dict[str, Any] = field(default_factory=dict)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def outcome_of_run(run: Run | None, objective: str, *, reused: bool) -> Outcome:
    """The trial's state and values from its run row (the single source of truth)."""
    if run is None:
        return Outcome(TrialState.FAIL, None, {"error": "the job returned no run row"})
    attrs: dict[str, Any] = {
        "run_id": run.id,
        "run_status": run.status,
        ACCURACY: run.val_accuracy,
        "energy_train_j": run.energy_train_j,
        "energy_total_j": run.energy_total_j,
        # Uncertainty (J) of the energies, from how far the phase boundaries may be off.
        "energy_train_uncertainty_j": run.energy_train_uncertainty_j,
        "energy_total_uncertainty_j": run.energy_total_uncertainty_j,
        objective: getattr(run, objective),
        "meter_source": run.meter_source,
        SPENT_ATTR: 0.0 if reused else float(run.energy_total_j or 0.0),
        "reused_run": reused,
    }
    if run.forecast_energy_train_j is not None:
        attrs["forecast_energy_train_j"] = run.forecast_energy_train_j
    if run.stop_reason:
        attrs["stop_reason"] = run.stop_reason
    if run.error_type:
        attrs["error"] = f"{run.error_type}: {run.error_message or ''}"[:1000]
    if run.status == "pruned":
        return Outcome(TrialState.PRUNED, None, attrs)
    values = (run.val_accuracy, getattr(run, objective))
    if run.status != "completed" or not all(_finite(v) for v in values):
        if run.status == "completed" and skipped_inference(run.stop_reason):
            # A job that needs E_in does not take such a run as done (sweeper/run/resume.py);
            # should one still arrive (an older sweeper's job), say why it has no value.
            attrs["error"] = (
                f"run {run.id} skipped its inference benchmark, so it has no {objective}; "
                "running the search again measures it, as does another sweeper.name")
        elif run.status == "completed":
            attrs["error"] = f"objective values missing or not finite: {values}"
        return Outcome(TrialState.FAIL, None, attrs)
    return Outcome(TrialState.COMPLETE, (float(values[0]), float(values[1])), attrs)


def spent_energy_j(trials: Sequence[FrozenTrial]) -> float:
    """Joules the study's trials have spent so far, over every invocation."""
    return sum(float(t.user_attrs.get(SPENT_ATTR) or 0.0) for t in trials)


@dataclass(frozen=True)
class TrialLimit:
    limit_j: float
    reason: str


def trial_energy_limit(
    settings: SearchSettings,
    trials: Sequence[FrozenTrial],
    batch_size: int,
    app_limit_j: float | None = None,
) -> TrialLimit | None:
    """The training-energy limit for the next trials: the tightest of the per-trial cap,
    their share of the remaining budget, and the dominance bound."""
    candidates: list[TrialLimit] = []
    if app_limit_j is not None:
        candidates.append(TrialLimit(app_limit_j, "sweeper.max_energy_train_j"))
    if settings.max_trial_energy_j is not None:
        candidates.append(TrialLimit(settings.max_trial_energy_j, "max_trial_energy_j"))
    if settings.energy_budget_j is not None:
        remaining = max(settings.energy_budget_j - spent_energy_j(trials), 0.0)
        candidates.append(TrialLimit(remaining / batch_size, "remaining study budget"))
    if settings.prune_dominated and settings.objective in TRAIN_BOUNDED:
        at_target = [
            t for t in trials
            if t.state == TrialState.COMPLETE and t.values[0] >= settings.target_accuracy
        ]
        if at_target:
            best = min(at_target, key=lambda t: t.values[1])
            candidates.append(TrialLimit(
                best.values[1],
                f"dominated by trial {best.number} at val acc {best.values[0]:.3f}",
            ))
    return min(candidates, key=lambda c: c.limit_j, default=None)
