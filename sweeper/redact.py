"""Keeping database passwords out of everything sweeper prints or stores.

Passwords belong in the environment (SWEEPER_DB_PASSWORD, PGPASSWORD) or in libpq's
~/.pgpass / service file. A user may still type one into storage.url; then it must not
reach the runs table, the sweeps table, the logs or Hydra's saved configs, because those
are shared with everyone who reads the results.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote

MASK = "***"

# scheme://user:password@host. The password may hold anything but '@' and spaces. Hydra
# escapes ':' (and '=') in the overrides it hands to each job of a sweep, so its launch lines,
# overrides.yaml, hydra.yaml and runs.overrides hold `scheme\://user\:password@host`; YAML
# and JSON double the backslash. Any number of backslashes before a colon is the same colon.
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*\\*://[^:/@\s]*?)(?P<sep>\\*:)(?P<pw>[^@\s]+)@"
)
# libpq keywords in a query string or a conninfo (?password=..., password=...), also escaped
# (password\=...), and the environment variables that carry one (PGPASSWORD=...).
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>(?:\b|(?<=PG)|(?<=SWEEPER_DB_))password\\*=)(?P<pw>[^&\s'\"]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """The text with every URL password and password= value replaced by ***, in every form
    Hydra, YAML or JSON writes it (plain, or with escaped colons)."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{m['sep']}{MASK}@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def has_secret(text: str) -> bool:
    return mask_secrets(text) != text


def secrets_in(texts: Iterable[str]) -> set[str]:
    """The passwords written in these texts (as typed, and without Hydra's escapes)."""
    found: set[str] = set()
    for text in texts:
        for pattern in (_URL_PASSWORD, _KEYWORD_PASSWORD):
            for match in pattern.finditer(str(text)):
                found |= {match["pw"], _HYDRA_ESCAPE.sub(r"\1", match["pw"])}
    return {s for s in found if s}


_HYDRA_ESCAPE = re.compile(r"\\([\\()\[\]{}:=, \t])")


def take_passwords(args: Sequence[str]) -> tuple[list[str], set[str]]:
    """The arguments with every password typed into them removed (a URL's `user:PASSWORD@`
    becomes `user@`; a `password=...` keyword goes), and those passwords as the server reads
    them (percent-decoded).

    The entry point calls this before Hydra sees the command line and hands the password to
    the store (and to every job, through the environment) as SWEEPER_DB_PASSWORD: Hydra's
    saved configs, logs and error lines and the launchers' job files (submitit's pickles)
    then never hold it, on success, failure or interruption alike.
    """
    found: set[str] = set()

    def take(match: re.Match[str], keep: str) -> str:
        found.add(unquote(_HYDRA_ESCAPE.sub(r"\1", match["pw"])))
        return keep

    cleaned = []
    for arg in args:
        arg = _URL_PASSWORD.sub(lambda m: take(m, f"{m['head']}@"), arg)
        cleaned.append(_KEYWORD_PASSWORD.sub(lambda m: take(m, ""), arg))
    return cleaned, {s for s in found if s}


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


class MaskedStream:
    """A text stream that masks passwords in everything written to it: the last line of
    defence for what bypasses logging (Hydra's `Error executing job with overrides: [...]`
    line, tracebacks)."""

    masks_secrets = True

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(mask_secrets(text))

    def writelines(self, lines: Iterable[str]) -> None:
        self._stream.writelines(mask_secrets(line) for line in lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_stream_redaction() -> None:
    """Mask passwords in this process's sys.stdout and sys.stderr (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not getattr(stream, "masks_secrets", False):
            setattr(sys, name, MaskedStream(stream))


def owner_only_files() -> None:
    """Create every file and folder from now on owner-only (0600 / 0700), unless the umask
    is already stricter: logs, Hydra's .hydra/ configs, launcher job files and the SQLite
    file (with its -wal / -journal, which SQLite creates with the database's mode) can hold
    a config, and a shared machine has other users. Processes started from here (submitit's
    jobs) inherit the umask."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


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


def scrub_pickles(paths: Iterable[Path], secrets: Iterable[str]) -> list[Path]:
    """Overwrite each password's bytes in binary job files (submitit's pickles of a job's
    overrides and result) with as many '*': a pickle stores string lengths, so a same-length
    mask keeps it loadable. Returns the files that were rewritten."""
    needles = [s.encode("utf-8") for s in sorted(set(secrets), key=len, reverse=True) if s]
    changed = []
    for path in paths:
        try:
            blob = path.read_bytes()
        except OSError:
            continue
        masked = blob
        for needle in needles:
            masked = masked.replace(needle, b"*" * len(needle))
        if masked != blob:
            path.write_bytes(masked)
            changed.append(path)
    return changed


def scrub_sweep_dir(sweep_dir: str | Path | None, overrides: Iterable[str]) -> list[Path]:
    """Once a sweep is over, mask the passwords in `overrides` wherever its directory holds
    them: multirun.yaml, each job's .hydra/*.yaml and logs, and the launcher's job files
    (submitit's .submitit/*/*.pkl, *.out, *.err), which need the password while jobs run."""
    if not sweep_dir or not Path(sweep_dir).is_dir():
        return []
    root = Path(sweep_dir)
    texts = [p for p in root.rglob("*") if p.is_file() and p.suffix in _TEXT_SUFFIXES]
    pickles = [p for p in root.rglob("*.pkl") if p.is_file()]
    changed = scrub_files(texts)
    secrets = secrets_in(overrides)
    # A text file can hold the password outside a URL (an error message, say).
    return sorted({*changed, *scrub_pickles(pickles + texts, secrets)})


_TEXT_SUFFIXES = {".yaml", ".yml", ".log", ".out", ".err", ".txt", ".json", ".sh"}


def scrub_hydra_outputs(hydra_dir: str | Path | None, sweep_dir: str | Path | None) -> None:
    """Mask what Hydra saved of the config: a job's .hydra/*.yaml and a sweep's multirun.yaml."""
    paths: list[Path] = []
    if hydra_dir:
        paths += sorted(Path(hydra_dir).glob("*.yaml"))
    if sweep_dir:
        paths.append(Path(sweep_dir) / "multirun.yaml")
    scrub_files(p for p in paths if p.is_file())
