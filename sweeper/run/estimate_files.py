"""Where a grid job of `mode=estimate` leaves its estimate for the launching process: a
file in the job's output folder, so the grid's table does not depend on the launcher
running the jobs in the launching process."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

ESTIMATE_FILE = "estimate.pkl"


def save_estimate(output_dir: str | Path, job_num: int, estimate: Any) -> None:
    """Leave a grid job's estimate in its output folder for the launching process."""
    path = Path(output_dir) / ESTIMATE_FILE
    path.write_bytes(pickle.dumps((job_num, estimate)))


def load_estimates(sweep_dir: str | Path) -> list[Any]:
    """The estimates the grid's jobs left under ``sweep_dir``, in job order."""
    found = []
    for path in Path(sweep_dir).rglob(ESTIMATE_FILE):
        job_num, estimate = pickle.loads(path.read_bytes())  # noqa: S301 - our own files
        found.append((job_num, estimate))
    return [estimate for _, estimate in sorted(found, key=lambda pair: pair[0])]


def clear_estimates(sweep_dir: str | Path) -> None:
    """Remove estimates an earlier grid left in a reused sweep folder."""
    for path in Path(sweep_dir).rglob(ESTIMATE_FILE):
        path.unlink(missing_ok=True)
