"""The command line checked against the schema before Hydra composes anything.

Hydra and OmegaConf refuse an unknown key or a value of the wrong type themselves, but in
several lines naming the schema's classes; a range or a choice they do not check at all.
Every `key=value` override, and each value of a sweep (`batch=32,abc`, `range(...)`), is
checked here by the schema's one validator (sweeper.config.schema.check_value), so each
refusal is one line naming the key, the value and what is allowed, before any work: for
a run, a grid, a search (`hydra.sweeper.*` of hydra/sweeper=pareto) and mode=estimate.
The keys a named preset (`+experiment=NAME`) sets meet the same validator, and a
`model.NAME=` or `dataset.NAME=` its chosen option does not list is refused here (Hydra
would, in five lines), as is an option a group does not have (`model=resnet50`,
`hydra/sweeper=optuna`: Hydra would list the options one per line, in some 25). The
values of group options (model.*)
are checked later, where their builders' signatures are known (sweeper.config.options).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sweeper.config.keys import known_keys, unknown_key
from sweeper.config.schema import GROUPS, check_value, field_of, rule_of
from sweeper.errors import ConfigError, invalid_value
from sweeper.redact import mask_overrides

_SEARCH = "hydra.sweeper."
# Hydra's groups whose options sweeper's conf/ and the installed launcher and sweeper
# plugins provide (the latter in Hydra's ConfigStore once its plugins are loaded).
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper", "hydra/sweeper/sampler")


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
    """Refuse the first override of `args`, or the first key of a preset it names
    (`+experiment=NAME`), that the schema refuses (a ConfigError)."""
    from sweeper.energy.meter_group import command_line_dirs

    with command_line_dirs(config_dirs(args)):
        _check_overrides(args)
        _check_presets(args)


def _check_option_key(key: str, args: Sequence[str]) -> None:
    """`model.NAME=VALUE` for a NAME the chosen option's file does not list (each option
    of a sweep): one line, naming the keys it has and the `+` that adds a builder argument
    it does not list."""
    group, name = key.split(".", 1)
    for option in _chosen_options(group, args):
        path = _option_file(group, option)
        if path is None:
            continue  # no such option: checked with the group's value
        from omegaconf import OmegaConf

        listed = OmegaConf.load(path)
        if OmegaConf.select(listed, name, default="__absent__") == "__absent__":
            keys = ", ".join(sorted(str(k) for k in listed if k != "name")) or "none"
            raise ConfigError(
                f"unknown option '{key}' for {group} '{option}'; its options: {keys} (to pass "
                f"another argument of its builder: +{key}=VALUE)")


def _chosen_options(group: str, args: Sequence[str]) -> list[str]:
    """The group's options this command composes: each value of `group=...` on the
    command line, else a named preset's override, else conf/config.yaml's default."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [a for a in args if not a.startswith("-") and "=" in a]
    parsed = OverridesParser.create().parse_overrides(lines)
    given = [str(v) for o in parsed if o.key_or_group == group and not o.is_delete()
             for v in _values(o)]
    if given:
        return given
    for name in reversed(_preset_names(args)):
        path = _preset_file(name)
        for entry in _defaults(path) if path is not None else []:
            if f"override /{group}" in entry:
                return [str(entry[f"override /{group}"])]
    from importlib import resources

    for entry in _defaults(resources.files("sweeper.conf") / "config.yaml"):
        if group in entry:
            return [str(entry[group])]
    return []


def _defaults(path: Any) -> list[dict[str, Any]]:
    from omegaconf import OmegaConf

    listed = OmegaConf.to_container(OmegaConf.create(path.read_text(encoding="utf-8")))
    entries = listed.get("defaults", []) if isinstance(listed, dict) else []
    return [e for e in entries if isinstance(e, dict)]


def _option_file(group: str, option: str) -> Any:
    """conf/GROUP/OPTION.yaml of a --config-dir (searched first) or of the package
    (``check_command_line`` names the command's folders to ``config_roots``)."""
    from sweeper.energy.meter_group import config_roots

    for root in config_roots():
        candidate = root.joinpath(*group.split("/"), f"{option}.yaml")
        if candidate.is_file():
            return candidate
    return None


def _check_presets(args: Sequence[str]) -> None:
    """Each key a named preset sets, by the same validator as the command line: Hydra
    would refuse a wrong type there in several lines, and OmegaConf reads `3` as true for a
    bool field."""
    for name in _preset_names(args):
        path = _preset_file(name)
        if path is None:
            continue  # no such option: Hydra names the options there are
        from omegaconf import OmegaConf

        text = path.read_text(encoding="utf-8")
        if "@package _global_" not in "".join(text.splitlines()[:5]):
            continue  # keys under `experiment.`: the composed config's key check sees them
        container = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        if not isinstance(container, dict):
            continue
        try:
            _check_node(container, "")
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in the preset {path})") from None


def _preset_names(args: Sequence[str]) -> list[str]:
    lines = [a for a in args if not a.startswith("-") and "=" in a]
    if not lines:
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException:
        return []  # a syntax error: Hydra reports it
    return [str(v) for o in parsed if o.key_or_group == "experiment" and not o.is_delete()
            for v in _values(o) if isinstance(v, str)]


def _preset_file(name: str) -> Any:
    return _option_file("experiment", name)


def _check_node(node: dict[Any, Any], prefix: str) -> None:
    for raw_key, value in node.items():
        key = f"{prefix}{raw_key}"
        if not prefix and raw_key in ("defaults", "hydra"):
            continue  # the preset's group choices and sweep: Hydra's own to read
        top = key.split(".")[0]
        if top in GROUPS or top == "experiment":
            continue  # a group option: checked against its builder (config.options)
        field = field_of(key)
        if field is not None:
            check_value(key, value, rule_of(field))
        elif isinstance(value, dict) and key in known_keys():
            _check_node(value, f"{key}.")
        elif key not in known_keys():
            raise unknown_key(key)


def _check_overrides(args: Sequence[str]) -> None:
    lines = [a for a in args if not a.startswith("-") and "=" in a]
    if not lines:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException:
        return  # a syntax error: Hydra reports it
    search = any(o.key_or_group == "hydra/sweeper" and o.value() == "pareto" for o in parsed)
    for override in parsed:
        key = override.key_or_group
        if key in HYDRA_GROUPS and override.package is None:
            _check_group_choice(override, key, args, lines)
            continue
        if override.is_delete() or override.package is not None or "/" in key:
            continue  # a group choice, or a removal
        if key.split(".")[0] in GROUPS and "." in key \
                and override.type == OverrideType.CHANGE:
            _check_option_key(key, args)  # Hydra refuses a key its option lacks, in 5 lines
        if key in GROUPS or key == "experiment":
            _check_group_choice(override, key, args, lines)
            continue
        if key.split(".")[0] in GROUPS:
            continue  # a group option's value: checked against its builder (config.options)
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


def _check_group_choice(override: Any, group: str, args: Sequence[str],
                        lines: Sequence[str]) -> None:
    """`model=NAME` (each name of a sweep) with no conf/model/NAME.yaml where Hydra will
    look: one line listing the options there are. Hydra refuses it in some 25 lines, the
    options one per line between its search path and a hint about its stack traces. A
    command that moves the search path (--config-path, hydra.searchpath=), or an installed
    plugin that adds to it, is left to Hydra, which alone knows where that leads."""
    if override.is_delete():
        return
    if any(a in ("--config-path", "-cp") or a.startswith("--config-path=") for a in args) \
            or any(a.split("=", 1)[0].lstrip("+~") == "hydra.searchpath" for a in lines):
        return
    options = _group_options(group)
    for value in _values(override):
        if value is None or "${" in str(value) or str(value) in options:
            continue
        if group in HYDRA_GROUPS:
            options |= _plugin_options(group)
            if str(value) in options:
                continue
        if _search_path_plugins():
            return
        shown = sorted(o for o in options if not o.endswith("_schema"))  # a plugin's schema
        error = invalid_value(group, str(value), ", ".join(shown))
        if override.is_sweep_override():
            raise ConfigError(f"{error} (in the sweep: {mask_overrides(lines)})")
        raise error


def _plugin_options(group: str) -> set[str]:
    """The options Hydra's installed plugins register in its ConfigStore for ``group``
    (hydra/launcher: basic, submitit_local, ...). Loading the plugins is Hydra's own first
    step, so the scan is not repeated later."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()
    try:
        names = ConfigStore.instance().list(group)
    except OSError:  # no such group in the store
        return set()
    return {name.removesuffix(".yaml") for name in names}


def _search_path_plugins() -> bool:
    """Whether an installed Hydra SearchPathPlugin may add config folders (asked only once
    an option is missing: discovery imports every plugin)."""
    try:
        from hydra.core.plugins import Plugins
        from hydra.plugins.search_path_plugin import SearchPathPlugin

        return bool(Plugins.instance().discover(SearchPathPlugin))
    except Exception:  # noqa: BLE001  (a broken plugin: Hydra reports it when it composes)
        return True


def _group_options(group: str) -> set[str]:
    """The options of a config group: its YAML files in each --config-dir and in sweeper's
    own conf/ (``config_roots``), those in subfolders as `sub/name` (Hydra reads
    `+experiment=lab/fast` as experiment/lab/fast.yaml)."""
    from sweeper.energy.meter_group import config_roots

    def walk(folder: Any, prefix: str) -> Iterator[str]:
        for entry in folder.iterdir():
            if entry.is_dir() and f"{group}/{prefix}{entry.name}" not in HYDRA_GROUPS:
                yield from walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".yaml"):
                yield prefix + entry.name.removesuffix(".yaml")

    options: set[str] = set()
    for root in config_roots():
        folder = root.joinpath(*group.split("/"))
        if folder.is_dir():
            options |= set(walk(folder, ""))
    return options


def _check_search_key(override: Any, key: str) -> None:
    """A `hydra.sweeper.NAME` of hydra/sweeper=pareto, by ParetoSweeperConf's metadata."""
    from sweeper.search.config import ParetoSweeperConf

    field = field_of(key[len(_SEARCH):], ParetoSweeperConf)
    if field is None or field.metadata.get("help") is None:
        return  # params.*, sampler.*: the search checks them (search.settings)
    rule = rule_of(field)
    for value in _values(override):
        check_value(key, value, rule)
