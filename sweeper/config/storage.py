"""Where results are stored: the one place a configured storage URL becomes a store.

A relative SQLite path is anchored at the launch directory: the directory the command was
started from (Hydra's runtime.cwd inside a Hydra app and its jobs, the current directory
for the command-line tools), never a job's own output directory. Every stage that opens the
results database or an Optuna study goes through here, so they all agree on which file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from sweeper.errors import StoreError, invalid_value
from sweeper.store import Store, open_store
from sweeper.store.db import resolve_url

DEFAULT_URL = "sqlite:///results/sweeper.db"


def launch_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.cwd)
    return Path.cwd()


def check_url(value: Any, key: str = "storage.url") -> str:
    """A configured URL, refused in one line before anything opens it."""
    if not isinstance(value, str) or "://" not in value:
        raise invalid_value(key, value, f"a SQLAlchemy URL such as {DEFAULT_URL}")
    return value


def study_url(config: Any) -> str:
    """The Optuna study's database in a search: `hydra.sweeper.storage`, else the runs'
    `storage.url` (the one place this fallback is written)."""
    from omegaconf import OmegaConf

    own = OmegaConf.select(config, "hydra.sweeper.storage")
    if own is not None:
        return check_url(own, "hydra.sweeper.storage")
    return check_url(OmegaConf.select(config, "storage.url"))


def resolve_storage(url: str) -> URL:
    """The full URL (SQLite path anchored, password from the environment)."""
    return resolve_url(check_url(url), launch_dir())


def open_existing(url: str, purpose: str) -> Store:
    """The results store of `url` for reading only: a SQLite file that does not exist is
    refused (naming `purpose`) instead of being created empty."""
    resolved = resolve_storage(url)
    if resolved.get_backend_name() == "sqlite":
        path = resolved.database or ""
        if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
            raise StoreError(f"no database at {path}: {purpose}; nothing was created")
    return open_results(url)


def open_results(url: str, outage_s: float | None = None) -> Store:
    """The results store of `url`, created or upgraded if needed (cached per process).

    It must answer now; later reads and writes wait out an outage of up to `outage_s`
    (storage.outage_s; the store's default when None).
    """
    store = open_store(check_url(url), base_dir=launch_dir())
    if outage_s is not None:
        store.outage_s = outage_s
    return store
