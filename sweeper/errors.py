"""Errors that mean "fix your input", reported in one line instead of a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

from datasets import DatasetUnavailable
from sweeper.energy import MeterUnavailable
from sweeper.spec import ConfigError
from sweeper.store import StoreError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    StoreError,
    DatasetUnavailable,
    MeterUnavailable,
)

USER_ERROR_EXIT = 2


def exit_with_user_error(exc: BaseException) -> NoReturn:
    print(f"sweeper: error: {exc}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)
