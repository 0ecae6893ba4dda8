"""`python -m sweeper.front`: print the Pareto front (accuracy against energy) of a search.

    python -m sweeper.front                      # the latest study in results/sweeper.db
    python -m sweeper.front --study NAME --storage sqlite:///results/sweeper.db
    python -m sweeper.front --list               # every study in the database
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import optuna
from rich.console import Console

DEFAULT_STORAGE = "sqlite:///results/sweeper.db"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.front", description="Print the Pareto front of a search."
    )
    parser.add_argument("--study", help="study name (default: the most recently created)")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE,
        help=f"database URL; a relative SQLite path is relative to the current directory "
        f"(default: {DEFAULT_STORAGE})",
    )
    parser.add_argument("--list", action="store_true", help="list the studies and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from sweeper.config.storage import resolve_storage
    from sweeper.errors import USER_ERRORS
    from sweeper.search.front import print_front
    from sweeper.search.study import optuna_storage

    args = _parse(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        url = resolve_storage(args.storage)
    except USER_ERRORS as exc:
        print(f"sweeper.front: error: {exc}", file=sys.stderr)
        return 2
    if url.get_backend_name() == "sqlite" and not _exists(url.database):
        print(f"sweeper.front: error: no database at {url.database}", file=sys.stderr)
        return 2
    storage = optuna_storage(url)
    # In creation order (the storage lists studies by id).
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if args.list:
        if not summaries:
            print(f"no studies in {args.storage}", file=sys.stderr)
        for s in summaries:
            print(f"{s.study_name}\t{s.n_trials} trial(s)")
        return 0
    if not summaries:
        print(f"sweeper.front: error: no study in {args.storage}", file=sys.stderr)
        return 2
    name = args.study or summaries[-1].study_name
    if name not in {s.study_name for s in summaries}:
        known = ", ".join(repr(s.study_name) for s in summaries)
        print(f"sweeper.front: error: no study {name!r}; studies: {known}", file=sys.stderr)
        return 2
    study = optuna.load_study(study_name=name, storage=storage)
    if len(study.directions) != 2:
        print(f"sweeper.front: error: study {name!r} is not a two-objective search",
              file=sys.stderr)
        return 2
    print_front(study, console=Console(width=200))
    return 0


def _exists(path: str | None) -> bool:
    from pathlib import Path

    return bool(path) and Path(str(path)).exists()


if __name__ == "__main__":
    sys.exit(main())
