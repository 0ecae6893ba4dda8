"""Trials left RUNNING by a search process that was killed outright.

Optuna's own heartbeat works inside `study.optimize`, not with ask-and-tell, so a search
killed by SIGKILL or a lost node leaves its trials RUNNING for ever (the dashboard shows
them running, and nothing tells them). Each trial records which process asked it; a
resumed search fails the ones whose process is gone, or whose run has ended without the
trial being told.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime

from optuna import Study
from optuna.trial import FrozenTrial, Trial, TrialState

from sweeper.run.liveness import HEARTBEAT_S, as_utc, gone_from_this_host, reclaim_vanished_runs
from sweeper.store import Run, Store
from sweeper.store import runs as store_runs
from sweeper.store.schema import utcnow

log = logging.getLogger("sweeper.search")

HOST_ATTR = "search_host"
PID_ATTR = "search_pid"
TELL_GRACE_S = 2 * HEARTBEAT_S  # a live search tells a finished run's trial within seconds


def claim(trial: Trial) -> None:
    """Record the process that asked this trial and will tell its outcome."""
    trial.set_user_attr(HOST_ATTR, socket.gethostname())
    trial.set_user_attr(PID_ATTR, os.getpid())


def why_orphaned(
    trial: FrozenTrial, host: str, runs: list[Run], now: datetime, grace_s: float = TELL_GRACE_S
) -> str | None:
    """Why nobody will ever tell this RUNNING trial, or None if someone still may.

    runs: the sweep's run rows with this trial's number. A run that ended less than grace_s
    ago may be about to be told by a live search on another host.
    """
    pid = trial.user_attrs.get(PID_ATTR)
    if isinstance(pid, int) and gone_from_this_host(trial.user_attrs.get(HOST_ATTR), pid, host):
        return f"the search process that asked it (pid {pid} on {host}) is gone"
    ended = [as_utc(r.ended_at) for r in runs if r.status != "running"]
    if not runs or len(ended) < len(runs):
        return None
    if all(e is not None and (now - e).total_seconds() > grace_s for e in ended):
        last = runs[-1]
        return f"its run {last.id} ended ({last.status}) but the search never told the trial"
    return None


def fail_orphaned_trials(study: Study, store: Store, sweep_name: str) -> list[int]:
    """Fail the study's RUNNING trials that nobody will tell; their numbers."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    sweep = store_runs.find_sweep(store, sweep_name)
    by_trial: dict[int, list[Run]] = {}
    if sweep is not None:
        reclaim_vanished_runs(store, sweep.id)  # a killed search's run was left 'running' too
        for run in store_runs.sweep_runs(store, sweep.id):
            if run.trial_number is not None:
                by_trial.setdefault(run.trial_number, []).append(run)
    host, now, failed = socket.gethostname(), utcnow(), []
    for frozen in running:
        reason = why_orphaned(frozen, host, by_trial.get(frozen.number, []), now)
        if reason is None:
            continue
        try:
            # Trial(study, id) is how Optuna itself reopens a trial to write to it.
            Trial(study, frozen._trial_id).set_user_attr("error", f"orphaned: {reason}")
            study.tell(frozen.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # told by its own process meanwhile: not orphaned
            continue
        log.warning("trial %d was left RUNNING: %s; marked failed", frozen.number, reason)
        failed.append(frozen.number)
    return failed
