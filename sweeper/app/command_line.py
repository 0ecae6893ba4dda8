"""The command line checked against the schema before Hydra composes anything.

Hydra and OmegaConf refuse an unknown key or a value of the wrong type themselves, but in
several lines naming the schema's classes; a range or a choice they do not check at all.
Every `key=value` override, and each value of a sweep (`batch=32,abc`, `range(...)`), is
checked here by the schema's one validator (sweeper.config.schema.check_value), so each
refusal is one line naming the key, the value and what is allowed, before any work: for
a run, a grid, a search (`hydra.sweeper.*` of hydra/sweeper=pareto) and mode=estimate.
Config groups and their options (model=, model.*) are checked later, where their
builders' signatures are known (sweeper.config.options).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sweeper.config.keys import known_keys, unknown_key
from sweeper.config.schema import GROUPS, check_value, field_of, rule_of
from sweeper.errors import ConfigError
from sweeper.redact import mask_overrides

_SEARCH = "hydra.sweeper."


def app_help() -> str:
    """`python -m sweeper --help`: conf/config.yaml's header, the config groups, the schema's
    key table and the footer. Written here rather than through Hydra's help template:
    Hydra lists the groups by copying its whole config repository once per group, which
    with the schema in it took a second."""
    from importlib import resources

    from omegaconf import OmegaConf

    from sweeper.config.schema import key_table
    from sweeper.search.config import search_key_table

    conf = resources.files("sweeper.conf")
    text = OmegaConf.create(conf.joinpath("config.yaml").read_text()).hydra.help
    groups = [
        f"{entry.name}: " + ", ".join(sorted(
            p.name.removesuffix(".yaml") for p in entry.iterdir() if p.name.endswith(".yaml")))
        for entry in sorted(conf.iterdir(), key=lambda e: e.name)
        if entry.is_dir() and entry.name not in ("hydra", "__pycache__")
    ]
    return "\n".join([
        str(text.header).rstrip(), "", "== Config groups (group=option) ==", *groups, "",
        "== Keys (key=default  meaning [allowed]; from sweeper/config/schema.py) ==",
        key_table(), "",
        "== Search keys (with hydra/sweeper=pareto; samplers: hydra/sweeper/sampler=NAME, "
        "their arguments hydra.sweeper.sampler.ARG=VALUE) ==",
        search_key_table(), "", str(text.footer).rstrip(),
    ])


def _values(override: Any) -> Iterator[Any]:
    """The values an override gives: one, or each of a choice or range sweep (an interval
    is the search's to sample, and is not listed)."""
    if not override.is_sweep_override():
        yield override.value()
        return
    try:
        yield from override.sweep_iterator()
    except Exception:  # noqa: BLE001  (interval, glob: not a list of values)
        return


def config_dirs(args: Sequence[str]) -> list[str]:
    """The folders `--config-dir DIR` / `--config-dir=DIR` / `-cd DIR` add to Hydra's search
    path (a meter of the energy/meter group may live there)."""
    dirs = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


def check_command_line(args: Sequence[str]) -> None:
    """Refuse the first override of `args` that the schema refuses (a ConfigError)."""
    from sweeper.energy.meter_group import command_line_dirs

    with command_line_dirs(config_dirs(args)):
        _check_overrides(args)


def _check_overrides(args: Sequence[str]) -> None:
    lines = [a for a in args if not a.startswith("-") and "=" in a]
    if not lines:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException:
        return  # a syntax error: Hydra reports it
    search = any(o.key_or_group == "hydra/sweeper" and o.value() == "pareto" for o in parsed)
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() or override.package is not None or "/" in key:
            continue  # a group choice, or a removal
        if key in GROUPS or key == "experiment" or key.split(".")[0] in GROUPS:
            continue  # a group option: checked against its builder (config.options)
        if key.startswith("hydra."):
            if search and key.startswith(_SEARCH):
                _check_search_key(override, key)
            continue
        field = field_of(key)
        if field is None:
            if key in known_keys():
                continue  # a whole node (energy={...}): its keys are checked once composed
            raise unknown_key(key)
        rule = rule_of(field)
        try:
            for value in _values(override):
                check_value(key, value, rule)
        except ConfigError as exc:
            if not override.is_sweep_override():
                raise
            # A value of a sweep: name the command it came from (passwords masked).
            raise ConfigError(f"{exc} (in the sweep: {mask_overrides(lines)})") from None


def _check_search_key(override: Any, key: str) -> None:
    """A `hydra.sweeper.NAME` of hydra/sweeper=pareto, by ParetoSweeperConf's metadata."""
    from sweeper.search.config import ParetoSweeperConf

    field = field_of(key[len(_SEARCH):], ParetoSweeperConf)
    if field is None or field.metadata.get("help") is None:
        return  # params.*, sampler.*: the search checks them (search.settings)
    rule = rule_of(field)
    for value in _values(override):
        check_value(key, value, rule)
