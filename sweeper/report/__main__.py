"""`python -m sweeper.report [--storage URL] [--out DIR] [--sweep NAME] [--run ID]`, and
`python -m sweeper.report --list` for the sweep names a store holds.

Bad input (no database, an unknown sweep or run) is one line on stderr and exit status 2,
as sweeper's own user errors, and nothing in --out is written or changed."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from sweeper.config.schema import key, option_parser, parse_options
from sweeper.config.storage import DEFAULT_URL as DEFAULT_STORAGE
from sweeper.config.storage import open_existing
from sweeper.errors import USER_ERROR_EXIT, USER_ERRORS, ConfigError
from sweeper.store import Store


@dataclass
class ReportOptions:
    """The report's options: each `--name` is a field, checked by the schema's validator."""

    storage: str = key(DEFAULT_STORAGE, check="url", help="SQLAlchemy URL of the store")
    out: str = key("results/report", help="output directory")
    sweep: list[str] = key([], help="only this sweep (repeatable; default: every run)")
    run: int | None = key(None, ge=1, help="run whose power trace is drawn (default: the "
                          "latest with samples)")
    no_parquet: bool = key(False, help="CSV exports only (removes Parquet files of an earlier "
                           "report)")
    list: bool = key(False, help="print the store's sweep names (with run counts) and exit")
    energy: str = key("gross", choices=("gross", "net"), help="energy the analyses use: gross "
                      "(all the meters read, the study's quantity) or net of idle power, "
                      "sweeper's addition")
    exclude_busy: bool = key(False, help="leave out runs measured while other processes "
                             "loaded the machine")
    quiet: bool = key(False, help="no terminal summary")


def parse_args(argv: list[str] | None = None) -> ReportOptions:
    """The options, or one line naming the option, the value and what is allowed (exit 2)."""
    parser = option_parser(ReportOptions, "sweeper-report", "Write an HTML report with "
                           "figures and CSV/Parquet exports of a store.")
    try:
        return parse_options(ReportOptions, parser, argv)
    except ConfigError as exc:
        print(f"sweeper-report: error: {exc}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None


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
        check_out(Path(args.out))
        console = None if args.quiet else Console(width=160)
        report = build_report(store, Path(args.out), sweeps=args.sweep, run_id=args.run,
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
