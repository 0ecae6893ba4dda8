"""Whether a configuration is already done in its sweep, across sweeper upgrades.

A run's identity hash (sweeper.config.identity) once covered the whole config, so runs
stored by an older sweeper carry hashes that no current config produces. When the direct
look-up finds nothing, the sweep's completed runs are hashed again the current way; a match
takes the current hash (so the next look-up is direct) and counts as done.
"""

from __future__ import annotations

import logging

from sweeper.config.identity import config_hash
from sweeper.run.inference_gate import SKIPPED
from sweeper.store import runs as store_runs
from sweeper.store.db import Store

log = logging.getLogger(__name__)


def completed_run(store: Store, sweep_id: int, digest: str, *,
                  needs_inference: bool = True) -> int | None:
    """The newest completed run of the configuration hashed as digest, if any. A run that
    skipped its inference benchmark (a search trial the front dominated) is done only for a
    job that does not need E_in: a grid resumed on that sweep runs it again in full."""
    unless = SKIPPED if needs_inference else None
    done = store_runs.completed_run_id(store, sweep_id, digest, unless)
    if done is not None:
        return done
    for run_id, stored, config in store_runs.completed_configs(store, sweep_id, unless):
        if stored != digest and config and config_hash(config) == digest:
            store_runs.set_config_hash(store, run_id, digest)
            log.info("run %d, stored by an earlier sweeper version, is this configuration: "
                     "its identity is updated", run_id)
            return run_id
    return None
