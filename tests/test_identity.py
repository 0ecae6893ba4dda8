"""A run's identity survives sweeper upgrades that add keys with defaults."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from hydra import compose

from sweeper.config.identity import config_hash, identity
from sweeper.config.spec import build_spec
from tests.conftest import TINY, run_cli


@pytest.mark.usefixtures("hydra_conf")
def test_identity_holds_only_what_differs_from_the_groups_defaults() -> None:
    spec = build_spec(compose("config", overrides=["model=resnet", "batch=32", "lr=0.01"]))
    assert identity(spec.config) == {
        "batch": 32, "lr": 0.01, "inference.batch": 32,  # inference.batch follows ${batch}
        "model.name": "resnet", "dataset.name": "digits", "precision.name": "fp32",
    }


@pytest.mark.usefixtures("hydra_conf")
def test_a_key_added_with_its_default_keeps_the_hash_and_a_changed_value_does_not() -> None:
    resolved = build_spec(compose("config", overrides=["model=mlp", "epochs=3"])).config
    older = json.loads(json.dumps(resolved))
    del older["energy"]["busy_other_cpu_pct"]  # as stored by a sweeper without the key
    del older["inference"]["warmup_batches"]
    assert config_hash(older) == config_hash(resolved)
    assert config_hash(resolved | {"epochs": 4}) != config_hash(resolved)
    moved = json.loads(json.dumps(resolved))
    moved["energy"]["busy_other_cpu_pct"] = 50.0
    assert config_hash(moved) != config_hash(resolved)
    # Two options with the same settings stay apart: the group's option is always named.
    assert "model.name" in identity(resolved)


@pytest.mark.slow
def test_a_sweep_stored_by_an_older_sweeper_resumes_without_running_again(
    tmp_path: Path,
) -> None:
    """The run is stored as an older sweeper stored it (a key missing from its config, the
    hash over the whole config); the same command then skips it instead of training."""
    args = ["-m", "model=mlp", "batch=64", *TINY]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    db = tmp_path / "results" / "sweeper.db"
    with sqlite3.connect(db) as conn:
        (run_id, config), = conn.execute("select id, config from runs").fetchall()
        older = json.loads(config)
        del older["energy"]["busy_other_cpu_pct"]
        kept = {k: v for k, v in older.items() if k not in ("storage", "sweeper", "hydra", "trial")}
        old_hash = hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":"),
                                             default=str).encode()).hexdigest()
        conn.execute("update runs set config = ?, config_hash = ? where id = ?",
                     (json.dumps(older), old_hash, run_id))
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping" in again.stderr + again.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select id, config_hash from runs").fetchall()
    assert len(rows) == 1 and rows[0][0] == run_id
    assert rows[0][1] == config_hash(older) != old_hash  # adopted: the next look-up is direct
