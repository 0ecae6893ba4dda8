"""Every error that means "fix your input or your setup", in one place at the bottom of the
package, so any stage can raise one without importing the stage that reports it.

The entry point prints these as one line (`sweeper: error: ...`) and exits with
USER_ERROR_EXIT instead of showing a traceback.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn


class ConfigError(ValueError):
    """A config value is invalid; raised before any work starts."""


class StoreError(RuntimeError):
    """The store cannot be used; the message says why and what to do."""


class StoreUnavailable(StoreError):
    """The store stopped answering for longer than storage.outage_s: sweeper waited (and
    kept a running run's writes in memory) that long, then gave up."""


class DiskFull(StoreUnavailable):
    """The store's disk has no space left: the run stops at once (waiting frees nothing),
    what was stored is kept, and the same command resumes once space is freed."""


class DatasetUnavailable(RuntimeError):
    """The data cannot be read (files missing, download impossible); the message says
    where we looked and how to get the files, so a sweep fails with an actionable error."""


class MeterUnavailable(RuntimeError):
    """A meter cannot be opened here; the message says why and, where possible, how to fix it.

    Auto-selection catches it to fall back; an explicit meter choice lets it propagate so a
    run fails before training rather than after.
    """


USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    StoreError,
    DatasetUnavailable,
    MeterUnavailable,
)

USER_ERROR_EXIT = 2


def invalid_value(key: str, value: Any, allowed: str) -> ConfigError:
    """The one wording of a refused value: the key, the value as given, what is allowed."""
    return ConfigError(f"invalid value for '{key}': {value!r}; allowed: {allowed}")


def exit_with_user_error(exc: BaseException) -> NoReturn:
    print(f"sweeper: error: {exc}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)
