"""`python -m sweeper.front`: print the Pareto front (accuracy against energy) of a search.

    python -m sweeper.front                      # the latest study in results/sweeper.db
    python -m sweeper.front --study NAME --storage sqlite:///results/sweeper.db
    python -m sweeper.front --list               # every study in the database
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from rich.console import Console

from sweeper.config.schema import key, option_parser, parse_options
from sweeper.errors import ConfigError

DEFAULT_STORAGE = "sqlite:///results/sweeper.db"


@dataclass
class FrontOptions:
    """The options: each `--name` is a field, checked by the schema's validator."""

    study: str | None = key(None, help="study name (default: the most recently created)")
    storage: str = key(DEFAULT_STORAGE, check="url", help="database URL; a relative SQLite "
                       "path is relative to the current directory")
    list: bool = key(False, help="list the studies and exit")


def _parse(argv: Sequence[str] | None) -> FrontOptions:
    """The options, or one line naming the option, the value and what is allowed (exit 2)."""
    parser = option_parser(FrontOptions, "python -m sweeper.front",
                           "Print the Pareto front of a search.")
    try:
        return parse_options(FrontOptions, parser, argv)
    except ConfigError as exc:
        print(f"sweeper.front: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    from sweeper.config.storage import resolve_storage
    from sweeper.errors import USER_ERRORS
    from sweeper.search.front_table import print_front
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
