"""Keeping database passwords out of everything sweeper prints or stores.

Passwords belong in the environment (SWEEPER_DB_PASSWORD, PGPASSWORD) or in libpq's
~/.pgpass / service file. A user may still type one into storage.url; then it must not
reach the runs table, the sweeps table, the logs or Hydra's saved configs, because those
are shared with everyone who reads the results.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "***"

# scheme://user:password@host  (the password may hold anything but '@' and spaces)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s]+)@")
# libpq keywords in a query string or a conninfo: ?password=... / password=...
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword=)(?P<pw>[^&\s'\"]+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """The text with every URL password and password= value replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def has_secret(text: str) -> bool:
    return mask_secrets(text) != text


def mask_config(value: Any) -> Any:
    """A copy of a resolved config (dicts, lists, scalars) with passwords masked."""
    if isinstance(value, dict):
        return {k: mask_config(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_config(v) for v in value)
    if isinstance(value, str):
        return mask_secrets(value)
    return value


def mask_overrides(overrides: Iterable[str]) -> str:
    """Hydra overrides joined for display or storage, passwords masked."""
    return mask_secrets(" ".join(overrides))


def install_log_redaction() -> None:
    """Mask passwords in every log record this process creates (idempotent).

    A record factory rather than a handler filter: Hydra's launchers reconfigure
    logging (replacing handlers) right before they log each job's overrides."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "masks_secrets", False):
        return

    def masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's error path
            return record
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    masking_factory.masks_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masking_factory)


def scrub_files(paths: Iterable[Path]) -> list[Path]:
    """Mask passwords inside saved files (Hydra's .hydra/*.yaml, multirun.yaml); returns
    the files that were rewritten."""
    changed = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        masked = mask_secrets(text)
        if masked != text:
            path.write_text(masked, encoding="utf-8")
            changed.append(path)
    return changed


def scrub_hydra_outputs(hydra_dir: str | Path | None, sweep_dir: str | Path | None) -> None:
    """Mask what Hydra saved of the config: a job's .hydra/*.yaml and a sweep's multirun.yaml."""
    paths: list[Path] = []
    if hydra_dir:
        paths += sorted(Path(hydra_dir).glob("*.yaml"))
    if sweep_dir:
        paths.append(Path(sweep_dir) / "multirun.yaml")
    scrub_files(p for p in paths if p.is_file())
