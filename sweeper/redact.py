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
