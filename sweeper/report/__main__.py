"""`python -m sweeper.report [--storage URL] [--out DIR] [--sweep NAME] [--run ID]`, and
`python -m sweeper.report --list` for the sweep names a store holds.

Bad input (no database, an unknown sweep or run) is one line on stderr and exit status 2,
as sweeper's own user errors, and nothing in --out is written or changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from sweeper.config.storage import DEFAULT_URL as DEFAULT_STORAGE
from sweeper.config.storage import open_existing
from sweeper.errors import USER_ERROR_EXIT, USER_ERRORS, ConfigError
from sweeper.store import Store


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
    parser.add_argument("--no-parquet", action="store_true",
                        help="CSV exports only (removes Parquet files of an earlier report)")
    parser.add_argument("--list", action="store_true",
                        help="print the store's sweep names (with run counts) and exit")
    parser.add_argument("--energy", choices=("gross", "net"), default="gross",
                        help="energy the analyses use: gross (all the meters read, the study's "
                             "quantity) or net of idle power, sweeper's addition (default: gross)")
    parser.add_argument("--exclude-busy", action="store_true",
                        help="leave out runs measured while other processes loaded the machine")
    parser.add_argument("--quiet", action="store_true", help="no terminal summary")
    return parser.parse_args(argv)


def check_sweeps(store: Store, wanted: list[str]) -> None:
    """Refuse sweep names the store does not hold, naming those it does."""
    from sweeper.report.data import sweep_names

    known = [name for name, _ in sweep_names(store)]
    missing = [name for name in wanted if name not in known]
    if missing:
        listing = ", ".join(repr(n) for n in known) if known else "none"
        raise LookupError(
            f"no sweep named {', '.join(repr(n) for n in missing)} in {store.display_url}; "
            f"its sweeps: {listing} (python -m sweeper.report --list)"
        )


def check_out(out: Path) -> None:
    """--out names a folder: an existing file there (even an empty one) is refused rather
    than written into or replaced."""
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is an existing file, not a folder; the report is a folder "
            "(index.html, figures, exports): pass a folder path, e.g. --out results/report"
        )


def check_written(html: Path) -> None:
    """Never end with exit 0 and an empty page (a full disk can leave one)."""
    if html.stat().st_size == 0:
        raise OSError(f"{html} was written empty; check the free space of its folder")


def print_sweeps(store: Store) -> None:
    from sweeper.report.data import sweep_names

    names = sweep_names(store)
    if not names:
        print(f"no sweeps in {store.display_url}")
    for name, runs in names:
        print(f"{name}\t{runs} run(s)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sweeper.report import build_report

    try:
        store = open_existing(args.storage, "run a sweep first or pass --storage")
        if args.list:
            print_sweeps(store)
            return 0
        check_sweeps(store, args.sweep)
        check_out(args.out)
        console = None if args.quiet else Console(width=160)
        report = build_report(store, args.out, sweeps=args.sweep, run_id=args.run,
                              parquet=not args.no_parquet, console=console, energy=args.energy,
                              exclude_busy=args.exclude_busy)
        check_written(report.html)
    except (*USER_ERRORS, LookupError) as exc:
        print(f"sweeper-report: error: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT
    except OSError as exc:  # a full disk, a folder not writable
        print(f"sweeper-report: error: cannot write the report to {args.out}: {exc}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
