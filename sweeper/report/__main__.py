"""`python -m sweeper.report [--storage URL] [--out DIR] [--sweep NAME] [--run ID]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from sweeper.errors import StoreError
from sweeper.store import open_store
from sweeper.store.db import resolve_url

DEFAULT_STORAGE = "sqlite:///results/sweeper.db"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sweeper-report",
        description="Write an HTML report with figures and CSV/Parquet exports of a store.",
    )
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"SQLAlchemy URL of the store (default: {DEFAULT_STORAGE})")
    parser.add_argument("--out", default="results/report", type=Path,
                        help="output directory (default: results/report)")
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME",
                        help="only this sweep (repeatable; default: every run)")
    parser.add_argument("--run", type=int, default=None, metavar="ID",
                        help="run whose power trace is drawn (default: the latest with samples)")
    parser.add_argument("--no-parquet", action="store_true", help="CSV exports only")
    parser.add_argument("--energy", choices=("gross", "net"), default="gross",
                        help="energy the analyses use: gross (all the meters read) or net of "
                             "idle power, the study's definition (default: gross)")
    parser.add_argument("--exclude-busy", action="store_true",
                        help="leave out runs measured while other processes loaded the machine")
    parser.add_argument("--quiet", action="store_true", help="no terminal summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sweeper.report import build_report

    try:
        url = resolve_url(args.storage, Path.cwd())
        database = url.database or ""
        on_disk = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        if on_disk and not database.startswith("file:") and not Path(database).exists():
            raise StoreError(f"no database at {database}; run a sweep first or pass --storage")
        store = open_store(args.storage, base_dir=Path.cwd())
        console = None if args.quiet else Console(width=160)
        build_report(store, args.out, sweeps=args.sweep, run_id=args.run,
                     parquet=not args.no_parquet, console=console, energy=args.energy,
                     exclude_busy=args.exclude_busy)
    except (StoreError, LookupError) as exc:
        print(f"sweeper-report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
