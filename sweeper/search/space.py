"""The search space: Hydra sweep syntax in, Optuna distributions out.

    model: choice(resnet,vit,cnn)          -> CategoricalDistribution
    epochs: range(1,4)                     -> IntDistribution(1, 3)
    lr: tag(log, interval(1e-4, 1e-2))     -> FloatDistribution(log=True)
    width: tag(int, interval(8, 64))       -> IntDistribution(8, 64)

Sweeps given on the command line (model=mlp,cnn) become categorical parameters; plain
overrides (epochs=1) are passed to every trial and replace a parameter of the same key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.errors import ConfigError

_TAGS = {"log", "int"}
_PRIMITIVES = (str, int, float, bool)


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # Optuna parameter name -> distribution
    keys: dict[str, str]  # Optuna parameter name -> override key (with any + prefix)
    fixed: list[str]  # overrides given to every trial as they are

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The overrides of one trial: the fixed ones, then its sampled values."""
        sampled = [f"{self.keys[name]}={format_value(value)}" for name, value in params.items()]
        return [*self.fixed, *sampled]


def _parser() -> OverridesParser:
    return OverridesParser.create()


def _parse(line: str, origin: str) -> Override:
    try:
        return _parser().parse_override(line)
    except HydraException as exc:
        raise ConfigError(f"cannot parse search parameter {line!r} ({origin}): {exc}") from None


def distribution_of(override: Override) -> BaseDistribution:
    """Map one sweep override to the Optuna distribution it describes."""
    value = override.value()
    key = override.get_key_element()
    tags = set(getattr(value, "tags", set()) or ())
    if tags - _TAGS:
        raise ConfigError(
            f"search parameter {key!r}: unknown tag(s) {sorted(tags - _TAGS)}; allowed: log, int"
        )
    log = "log" in tags
    try:
        if isinstance(value, ChoiceSweep):
            choices = list(value.list)
            bad = [c for c in choices if not isinstance(c, _PRIMITIVES)]
            if bad or not choices:
                raise ConfigError(
                    f"search parameter {key!r}: choice() needs plain values "
                    f"(strings, numbers, booleans), got {choices!r}"
                )
            return CategoricalDistribution(choices)
        if isinstance(value, RangeSweep):
            return _range_distribution(override, value, log)
        if isinstance(value, IntervalSweep):
            low, high = float(value.start), float(value.end)
            if "int" in tags:
                return IntDistribution(math.ceil(low), math.floor(high), log=log)
            return FloatDistribution(low, high, log=log)
    except ValueError as exc:  # Optuna's own checks: low > high, log with low <= 0, ...
        raise ConfigError(f"search parameter {key!r}: {exc}") from None
    raise ConfigError(f"search parameter {key!r}: {override.input_line!r} is not a sweep")


def _range_distribution(override: Override, value: RangeSweep, log: bool) -> BaseDistribution:
    values = list(override.sweep_iterator())
    key = override.get_key_element()
    if not values:
        raise ConfigError(f"search parameter {key!r}: {override.input_line!r} is empty")
    numbers = (value.start, value.stop, value.step)
    if all(isinstance(n, int) for n in numbers) and value.step > 0:
        if log and value.step != 1:
            raise ConfigError(f"search parameter {key!r}: tag(log, range(...)) needs step 1")
        return IntDistribution(values[0], values[-1], log=log, step=value.step)
    # A float (or descending) range: its values, as categories.
    return CategoricalDistribution(values)


def parse_space(params: Mapping[str, str], arguments: Sequence[str] = ()) -> SearchSpace:
    """Search parameters from config, then command-line arguments (which win per key)."""
    entries: dict[str, Override] = {}
    for key, text in params.items():
        override = _parse(f"{key}={text}", "hydra.sweeper.params")
        entries[override.key_or_group] = override
    for line in arguments:
        override = _parse(line, "command line")
        entries.pop(override.key_or_group, None)  # the command line replaces, in its order
        entries[override.key_or_group] = override
    distributions: dict[str, BaseDistribution] = {}
    keys: dict[str, str] = {}
    fixed: list[str] = []
    for name, override in entries.items():
        if override.is_sweep_override():
            distributions[name] = distribution_of(override)
            keys[name] = override.get_key_element()
        else:
            fixed.append(override.input_line or "")
    return SearchSpace(distributions, keys, fixed)


def format_value(value: Any) -> str:
    """A sampled value as an override value that Hydra parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    try:
        parsed = _parser().parse_override(f"k={text}").value()
    except HydraException:
        parsed = None
    if parsed == text and isinstance(parsed, str):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
