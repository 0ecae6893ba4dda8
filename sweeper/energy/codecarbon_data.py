"""CodeCarbon's bundled data files (CPU TDP table, grid carbon intensities), found without
importing CodeCarbon itself (its import starts logging and pulls in pandas)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def codecarbon_data_path(*parts: str) -> Path:
    """Path of a file bundled in CodeCarbon's ``data`` folder, found without importing it."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the codecarbon package is not installed")
    return Path(next(iter(spec.submodule_search_locations)), "data", *parts)
