"""Checking a whole grid before its first job, in one pass that scales to thousands of jobs.

Composing a job's config is Hydra's slow part (tenths of a second each). Jobs that differ
only in keys whose check reads no other key (spec.SINGLE_KEY_CHECKS: lr, seed, repeat...)
are the same configuration as far as every other check goes, so each distinct combination
of the other overrides (config groups, model and data options, epochs, device...) is
composed and validated once, in full, and each new value of a single-key override is
checked on its own. Any job whose overrides bring nothing new is already covered.
Hydra's own per-batch composition check is then skipped (hydra_plugins.sweeper_grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from sweeper.config.schema import check_value
from sweeper.config.spec import SINGLE_KEY_CHECKS, RunSpec, build_spec
from sweeper.errors import ConfigError
from sweeper.redact import mask_overrides

# The outcome of the last grid this process checked, for the grid sweeper.
CHECKED: dict[str, int] = {}


@dataclass
class Representative:
    """One fully validated job standing for every job that shares its other overrides."""

    overrides: list[str]
    spec: RunSpec
    jobs: int = 1


@dataclass
class GridCheck:
    jobs: int
    representatives: list[Representative] = field(default_factory=list)


def _single_key(override: Override) -> bool:
    """A plain `key=value` of a key whose check reads no other key."""
    value = override.value()
    return (
        override.key_or_group in SINGLE_KEY_CHECKS and override.package is None
        and not (override.is_add() or override.is_force_add() or override.is_delete())
        and not override.is_sweep_override()
        and not (isinstance(value, str) and "${" in value)
        and not isinstance(value, dict | list)
    )


def check_job(job_cfg: DictConfig, checked_devices: set[tuple[str, str]] | None = None) -> RunSpec:
    """The checks a job's config must pass before it runs, a single run's as a grid job's
    (`checked_devices`: device and precision pairs already checked, skipped)."""
    from sweeper.energy import carbon_intensity
    from sweeper.run.gpu_power import check_gpu_power
    from sweeper.training.device import check_precision, resolve_device

    spec = build_spec(job_cfg)
    checked = set() if checked_devices is None else checked_devices
    if (spec.device, spec.precision) not in checked:
        check_precision(spec.precision, resolve_device(spec.device))
        checked.add((spec.device, spec.precision))
    if spec.power_limit.active:  # the limit's range and the permission to set it
        check_gpu_power(spec, resolve_device(spec.device))
    try:
        carbon_intensity(spec.energy.country, spec.energy.region)
    except ValueError as exc:
        raise ConfigError(f"invalid value for 'energy.country': {exc}") from None
    return spec


def check_grid(config: DictConfig, jobs: Sequence[Sequence[str]]) -> GridCheck:
    """Compose and validate every job of a grid before any of them trains."""
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create()
    by_rest: dict[tuple[str, ...], Representative] = {}
    checked_values: set[tuple[str, str]] = set()
    checked_devices: set[tuple[str, str]] = set()
    parsed_lines: dict[str, Override] = {}  # a grid repeats each override in many jobs

    def parse(line: str) -> Override:
        if line not in parsed_lines:
            parsed_lines[line] = parser.parse_overrides([line])[0]
        return parsed_lines[line]

    for overrides in jobs:
        parsed = [parse(line) for line in overrides]
        single = [o for o in parsed if _single_key(o)]
        rest = tuple(o.input_line for o in parsed if not _single_key(o))
        known = by_rest.get(rest)
        if known is not None:
            known.jobs += 1
            for o in single:
                value = (o.key_or_group, repr(o.value()))
                if value not in checked_values:
                    _check_value(o, overrides)
                    checked_values.add(value)
            continue
        job_cfg = loader.load_sweep_config(config, list(overrides))
        try:
            spec = check_job(job_cfg, checked_devices)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in job: {mask_overrides(overrides)})") from None
        by_rest[rest] = Representative(list(overrides), spec)
        checked_values.update((o.key_or_group, repr(o.value())) for o in single)
    CHECKED.update(jobs=len(jobs))
    return GridCheck(len(jobs), list(by_rest.values()))


def _check_value(override: Override, job: Sequence[str]) -> None:
    """One value of a single-key override, checked as build_spec checks it (the schema's
    validator and the key's rule)."""
    key = override.key_or_group
    try:
        check_value(key, override.value(), SINGLE_KEY_CHECKS[key])
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in job: {mask_overrides(job)})") from None


def grid_forecast(config: DictConfig, check: GridCheck) -> str:
    """The grid's predicted energy and time (mode=estimate's fit of the completed runs in
    the store, one estimate per distinct configuration times its jobs), or why there is
    none."""
    from sweeper.errors import USER_ERRORS
    from sweeper.run.estimate_grid import energy_text, time_text
    from sweeper.run.estimate_mode import ZERO, Range, estimate_config

    def times(r: Range, n: int) -> Range:
        return Range(r.value * n, None if r.low is None else r.low * n,
                     None if r.high is None else r.high * n)

    energy, duration, timed = ZERO, ZERO, True
    try:
        for rep in check.representatives:
            estimate = estimate_config(config, rep.spec)
            energy = energy + times(estimate.energy_j, rep.jobs)
            if estimate.duration_s is None:
                timed = False
            else:
                duration = duration + times(estimate.duration_s, rep.jobs)
    except (*USER_ERRORS, LookupError) as exc:
        return f"no estimate ({str(exc).split(';')[0]})"

    def text(r: Range, fmt) -> str:  # type: ignore[no-untyped-def]
        band = "" if r.low is None or r.high is None else \
            f" ({fmt(r.low, r.value)} - {fmt(r.high, r.value)})"
        return f"{fmt(r.value)}{band}"

    spent = text(duration, time_text) if timed else "time unknown"
    return f"estimated {text(energy, energy_text)} and {spent} (mode=estimate)"


def confirm_above(config: DictConfig) -> int | None:
    """sweeper.confirm_above: a grid of more jobs is announced (and asked on a terminal)."""
    from sweeper.config.schema import field_of, rule_of

    value = OmegaConf.select(config, "sweeper.confirm_above", default=None)
    return check_value("sweeper.confirm_above", value, rule_of(field_of("sweeper.confirm_above")))


def announce_large_grid(config: DictConfig, check: GridCheck) -> None:
    """Before the first job of a grid above sweeper.confirm_above: its size and forecast,
    and on a terminal a question (anything but y stops it before any work)."""
    import sys

    threshold = confirm_above(config)
    if threshold is None or check.jobs <= threshold or OmegaConf.select(config, "mode") == (
            "estimate"):  # an estimate runs nothing: it is the forecast
        return
    distinct = len(check.representatives)
    line = (f"this grid has {check.jobs:,} jobs ({distinct:,} distinct configuration"
            f"{'' if distinct == 1 else 's'} apart from lr, seed and such; "
            f"sweeper.confirm_above={threshold}): {grid_forecast(config, check)}")
    print(f"sweeper: {line}", file=sys.stderr, flush=True)
    if sys.stdin is not None and sys.stdin.isatty():
        answer = input("start it? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise ConfigError(f"the grid of {check.jobs:,} jobs was not started (answer "
                              f"{answer!r}); raise sweeper.confirm_above to skip the question")
