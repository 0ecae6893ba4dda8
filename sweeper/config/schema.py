"""The one typed schema of sweeper's configuration: every key, its default, meaning, unit
and allowed values, written once, next to the field.

Registered in Hydra's ConfigStore as `config_schema` (by hydra_plugins.sweeper_schema;
conf/config.yaml extends it), so OmegaConf itself refuses a value of the wrong type (and
`epoch=1`; `+epoch=1` is refused by sweeper.config.keys); ranges and choices are
checked by `check_value`, the one validator, from the field's metadata (the search's
`hydra.sweeper` node and the report CLI use the same function). `--help` and the README's
key table are generated from here: `python -m sweeper.config.schema --markdown`.

Adding a key: one `key(...)` line here, plus the code that reads it (`spec.<group>.<key>`);
then `python -m sweeper.config.schema --write-readme README.md` regenerates the README's
table (tests/test_schema.py fails until it does). A key added with a default leaves every
stored run's identity as it was
(sweeper.config.identity hashes only values that differ from the defaults).

Kept light (no torch, SQLAlchemy or Optuna at import): Hydra's plugin scan imports it on
every start, `--help` included.
"""

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, NoReturn, Union, get_args, get_origin

from sweeper.errors import invalid_value

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")  # as sweeper.training.schedule (torch-free here)
INFERENCE_PROTOCOLS = ("batches", "study")
MODES = ("train", "forecast", "estimate", "layers")
# Above this the sampler's own CPU time grows past its 1% target on a laptop core, while no
# meter refreshes faster than ~1 kHz (RAPL) or ~10 Hz (NVML's energy counter).
MAX_SAMPLE_HZ = 1000.0
# The config groups: each is a node whose `name` is its option (conf/<group>/<name>.yaml);
# their other keys are checked against the builders' signatures (sweeper.config.options).
GROUPS = ("model", "dataset", "precision")


def key(
    default: Any = MISSING, *, help: str, unit: str = "", ge: float | None = None,
    gt: float | None = None, le: float | None = None, lt: float | None = None,
    choices: tuple[str, ...] | None = None, check: str | None = None, alone: bool = False,
) -> Any:
    """A schema field: its default and, once, what it means and what it allows.

    `check` names a rule of CHECKS for what a range or a list of choices cannot say;
    `alone`: its check reads no other key and it changes no estimate, so a grid checks
    each of its values once (sweeper.app.grid_check) instead of composing every job."""
    metadata = {"help": help, "unit": unit, "ge": ge, "gt": gt, "le": le, "lt": lt,
                "choices": choices, "check": check, "alone": alone}
    if isinstance(default, dict | list):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata)
    return field(default=default, metadata=metadata)


def group(node: type) -> Any:
    """A nested node of the schema (a dataclass of keys)."""
    return field(default_factory=node)


# ---------------------------------------------------------------------------------------
# The one validator


@dataclass(frozen=True)
class Rule:
    """What one key allows: its type, whether null is allowed, its range or choices, and a
    named custom check."""

    kind: Any  # int, float, bool, str, or Any (checked by `check` alone)
    nullable: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    check: str | None = None
    unit: str = ""

    def allowed(self) -> str:
        """What is allowed, in words, as error lines and the key table say it."""
        if self.check is not None:
            text = CHECKS[self.check][1]
        elif self.choices is not None:
            text = ", ".join(self.choices)
        elif self.kind is bool:
            text = "true or false"
        elif self.kind in (int, float):
            text = "an integer" if self.kind is int else "a finite number"
            bounds = [f"{op} {limit:g}" for op, limit in
                      ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                      if limit is not None]
            if bounds:
                text += " " + " and ".join(bounds)
            if self.unit:
                text += f" ({self.unit})"
        elif self.kind is str:
            text = "a string"
        else:
            text = "any value"
        return f"null or {text}" if self.nullable and self.check is None else text


def _number(value: Any) -> float | None:
    """A finite number as float, or None (bools, text, nan, inf, ints beyond float range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _in_range(value: float, rule: Rule) -> bool:
    """Compared as given (an int beyond 2**53 exactly, not as float() rounds it)."""
    return ((rule.ge is None or value >= rule.ge) and (rule.gt is None or value > rule.gt)
            and (rule.le is None or value <= rule.le) and (rule.lt is None or value < rule.lt))


def check_value(key: str, value: Any, rule: Rule) -> Any:
    """The value, normalised (floats as float), or one ConfigError line naming the key, the
    value as given and what is allowed."""
    if isinstance(value, str) and "${" in value:
        return value  # an interpolation: checked once resolved
    if value is None and (rule.nullable or rule.check is not None):
        return CHECKS[rule.check][0](key, value, rule) if rule.check else None
    if rule.check is not None:
        return CHECKS[rule.check][0](key, value, rule)
    ok = value is not None
    out = value
    if ok and rule.kind is bool:
        ok = isinstance(value, bool)
    elif ok and rule.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and _in_range(value, rule)
    elif ok and rule.kind is float:
        number = _number(value)
        ok = number is not None and _in_range(value, rule)
        out = number
    elif ok and rule.kind is str and rule.choices is None and _number(value) is not None:
        out = str(value)  # as OmegaConf reads `estimate.hardware=123` into a str field
    elif ok and rule.kind is str:
        ok = isinstance(value, str) and (rule.choices is None or value in rule.choices)
    if not ok:
        raise invalid_value(key, value, rule.allowed())
    return out


def rule_of(f: Any) -> Rule:
    """A dataclass field's Rule, from its type and `key(...)` metadata."""
    kind, nullable = _kind(f.type)
    meta = f.metadata
    return Rule(kind=kind, nullable=nullable, ge=meta.get("ge"), gt=meta.get("gt"),
                le=meta.get("le"), lt=meta.get("lt"), choices=meta.get("choices"),
                check=meta.get("check"), unit=meta.get("unit", ""))


def _kind(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, str):  # postponed annotations
        annotation = eval(annotation, vars(sys.modules[__name__]))  # noqa: S307
    args = get_args(annotation)
    if get_origin(annotation) in (Union, type(int | None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    if annotation in (int, float, bool, str):
        return annotation, False
    return Any, False


def validate(node: Any, values: Any, prefix: str = "") -> dict[str, Any]:
    """Check every key of the dataclass `node` in `values` (a mapping, or a dataclass);
    returns the keyword arguments that build it (absent keys keep their defaults)."""
    out: dict[str, Any] = {}
    for f in fields(node):
        if f.name.startswith("_"):
            continue
        name = f"{prefix}{f.name}"
        value = (values.get(f.name, MISSING) if hasattr(values, "get")
                 else getattr(values, f.name, MISSING))
        if value is MISSING:
            continue
        if is_dataclass(f.type):
            out[f.name] = f.type(**validate(f.type, value or {}, f"{name}."))
        elif f.metadata.get("help") is not None:
            out[f.name] = check_value(name, value, rule_of(f))
        else:
            out[f.name] = value
    return out


def leaves(node: type | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, field) of every key of the schema (or of `node`), in declaration order.
    A nested node is a dataclass-typed field (the schema's module keeps real annotations)."""
    for f in fields(node or SweeperConfig):
        if f.name.startswith("_"):
            continue
        if is_dataclass(f.type):
            yield from leaves(f.type, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            yield f"{prefix}{f.name}", f


def field_of(dotted: str, node: type | None = None) -> Any | None:
    """The schema field of a dotted key, or None."""
    return dict(leaves(node)).get(dotted)


# ---------------------------------------------------------------------------------------
# Named checks: what a type, a range or a list of choices cannot say. Each takes the key,
# the value as given and the field's Rule, and returns the value to use.


def _device(key: str, value: Any, rule: Rule) -> Any:
    text = value if isinstance(value, str) else ""
    if text in ("auto", "cpu", "cuda") or (
            text.startswith("cuda:") and text[5:].isascii() and text[5:].isdigit()):  # "cuda:²"
        return text
    raise invalid_value(key, value, CHECKS["device"][1])


def _meter(key: str, value: Any, rule: Rule) -> str:
    """`meter=`, read by the rule open_meters applies (auto, one meter, or a '+' list)."""
    from sweeper.energy import select

    try:
        return "+".join(select.parse_choice(value))
    except ValueError:  # the meters' own names, as energy.select knows them now
        raise invalid_value(key, value, f"{', '.join(select.CHOICES)}, or a '+' combination "
                            f"of {', '.join(select.SOURCES)} such as nvml+rapl") from None


def _url(key: str, value: Any, rule: Rule) -> str:
    from sweeper.config.storage import check_url  # SQLAlchemy: not at --help

    return check_url(value, key)


def _url_or_null(key: str, value: Any, rule: Rule) -> str | None:
    return None if value is None else _url(key, value, rule)


def _auto_int(key: str, value: Any, rule: Rule) -> Any:
    if value == "auto":
        return None  # in the spec: None is auto
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise invalid_value(key, value, CHECKS["auto_int"][1])


def _auto_bool(key: str, value: Any, rule: Rule) -> Any:
    if value == "auto":
        return None  # in the spec: None is auto
    if isinstance(value, bool):
        return value
    raise invalid_value(key, value, CHECKS["auto_bool"][1])


def _gpus(key: str, value: Any, rule: Rule) -> Any:
    if value is None:
        return None
    listed = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(listed, list | tuple) and all(
            isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in listed):
        return tuple(listed)
    raise invalid_value(key, value, CHECKS["gpus"][1])


def _power_fraction(key: str, value: Any, rule: Rule) -> Any:
    if value is None or value == "auto":
        return value
    number = _number(value)
    if number is None or not 0 < value <= 2.0:
        raise invalid_value(key, value, CHECKS["power_fraction"][1])
    return number


def _name(key: str, value: Any, rule: Rule) -> str | None:
    """A sweep or study name the store can hold, on every store (PostgreSQL refuses a longer
    one; SQLite would keep it)."""
    if value is None:
        return None
    name = str(value)
    if not name.strip():
        raise invalid_value(key, value, "null or a non-empty name")
    check_name(key, name)
    return name


NAME_LENGTH = 200  # sweeper.store.schema.NAME_LENGTH (tests/test_schema.py checks they agree)


def check_name(key: str, name: str, length: int = NAME_LENGTH, what: str = "") -> None:
    """A name of at most `length` characters, refused in one line otherwise."""
    if len(name) > length:
        raise invalid_value(
            key, f"{name[:40]}... ({len(name)} characters{what})", f"at most {length} characters"
        )


def _country(key: str, value: Any, rule: Rule) -> str:
    if isinstance(value, str) and value:
        return value
    raise invalid_value(key, value, CHECKS["country"][1])


def _sizes(key: str, value: Any, rule: Rule) -> Any:
    if isinstance(value, list | tuple) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return value
    raise invalid_value(key, value, CHECKS["sizes"][1])


def _front_points(key: str, value: Any, rule: Rule) -> Any:
    """Null, or (val accuracy in [0, 1], training joules >= 0) pairs."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        points = []
        for pair in value:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                break
            accuracy, energy_j = _number(pair[0]), _number(pair[1])
            if accuracy is None or energy_j is None or not 0 <= accuracy <= 1 or energy_j < 0:
                break
            points.append((accuracy, energy_j))
        else:
            return tuple(points)
    raise invalid_value(key, value, CHECKS["front_points"][1])


def _path(key: str, value: Any, rule: Rule) -> str:
    if isinstance(value, str) and value:
        return value
    raise invalid_value(key, value, CHECKS["path"][1])


# name -> (the check, what it allows in words)
CHECKS: dict[str, tuple[Callable[[str, Any, Rule], Any], str]] = {
    "device": (_device, "auto, cpu, cuda, cuda:N"),
    "meter": (_meter, "auto, a meter (nvml, rapl, estimate), or a '+' combination such as "
                      "nvml+rapl"),
    "url": (_url, "a SQLAlchemy URL such as sqlite:///results/sweeper.db"),
    "url_or_null": (_url_or_null, "null or a SQLAlchemy URL such as "
                                  "sqlite:///results/sweeper.db"),
    "auto_int": (_auto_int, "auto or an integer >= 0"),
    "auto_bool": (_auto_bool, "auto, true or false"),
    "gpus": (_gpus, "null or a list of GPU indices >= 0"),
    "power_fraction": (_power_fraction, "null, auto, or a fraction of the card's default "
                                        "limit in (0, 2] such as 0.8; watts go in "
                                        "gpu.power_limit_w"),
    "name": (_name, "null or a non-empty name"),
    "sizes": (_sizes, "a non-empty list of integers >= 1"),
    "path": (_path, "a directory path"),
    "front_points": (_front_points, "null or a list of [val_accuracy, energy_train_j] pairs "
                                    "(accuracy in [0, 1], joules >= 0)"),
    "country": (_country, "an ISO 3166 alpha-3 code such as FRA, or WORLD"),
}


# ---------------------------------------------------------------------------------------
# The schema


@dataclass
class LrStep:
    epochs: int = key(30, ge=1, unit="epochs", help="scheduler=step only: lr x gamma every "
                      "this many epochs")
    gamma: float = key(0.1, gt=0, help="scheduler=step only: the factor applied to lr")


@dataclass
class Loader:
    workers: Any = key("auto", check="auto_int", help="DataLoader worker processes: auto = 0 "
                       "on CPU, up to 8 on CUDA")
    pin_memory: Any = key("auto", check="auto_bool", help="pinned host memory for copies to "
                          "the GPU: auto = on for CUDA")


@dataclass
class Inference:
    """The inference benchmark (E_in). A phase must span many meter refreshes to be measured
    rather than quantised: NVML refreshes about every 100 ms, hence the time floor."""

    protocol: str = key("batches", choices=INFERENCE_PROTOCOLS, help="batches: forward passes "
                        "over cached batches (at least `batches` and `min_seconds`); study: "
                        "the whole test set through its loader `passes` times, as the study")
    batches: int = key(50, ge=1, unit="batches", help="protocol=batches: forward passes")
    batch: int = key("${batch}", ge=1, unit="samples", help="inference batch size (the study: "
                     "128, and the training batch in its batch sweep)")
    passes: int = key(5, ge=1, help="protocol=study: passes over the test set")
    min_seconds: float | None = key(None, ge=0, unit="s", help="a phase lasts at least this "
                                    "long; null: 20 refreshes of the slowest meter in use")
    warmup_batches: int = key(2, ge=0, unit="batches", help="forward passes before each "
                              "inference phase, outside it")
    every_epoch: bool = key(False, help="an inference phase after every training epoch (E_in "
                            "sums them), as the study's per-epoch test pass; false: one after "
                            "training")
    pause_s: float = key(0.0, ge=0, unit="s", help="idle before each inference phase, as the "
                         "study's 2 s sleep; stored as 'pause' phases")


@dataclass
class Idle:
    """The idle baseline for net-of-idle energies (the study's E_tr and E_in are gross)."""

    seconds: float = key(5.0, ge=0, unit="s", help="measured once per host and meter with "
                         "nothing running; 0 = no net columns")
    max_age_h: float = key(24.0, ge=0, unit="h", help="reuse a stored baseline of the same "
                           "hardware this long")


@dataclass
class Energy:
    sample_hz: float = key(10.0, gt=0, le=MAX_SAMPLE_HZ, unit="Hz", help="background "
                           "sampling rate; phase boundaries are read exactly")
    gpus: Any = key(None, check="gpus", help="GPU indices to measure; null = all visible")
    cpu_tdp_w: float | None = key(None, gt=0, unit="W", help="override the rated CPU power "
                                  "used by the estimate")
    country: str = key("WORLD", check="country", help="ISO 3166 alpha-3 code (or WORLD) for "
                       "grid carbon intensity")
    region: str | None = key(None, help="a US state or Canadian province where the data has it")
    pue: float = key(1.0, ge=1, help="data-centre power usage effectiveness")
    keep_samples: bool = key(True, help="store raw power samples")
    idle: Idle = group(Idle)
    busy_other_cpu_pct: float = key(25.0, ge=0, unit="%", help="other processes above this "
                                    "share of the CPU: measurement_warning")


@dataclass
class Gpu:
    """GPU power capping (the study's guideline 5); README "GPU power limit"."""

    power_limit: Any = key(None, check="power_fraction", help="a fraction of the card's "
                           "default limit, set on every GPU of the run; auto: profile 1.0-0.6 "
                           "in the first epoch, keep the least energy; null: as it is")
    power_limit_w: float | None = key(None, gt=0, unit="W", help="or the limit in watts "
                                      "(not both)")
    max_slowdown: float = key(0.1, ge=0, help="auto: at most this much more time per step "
                              "than at the default limit")


@dataclass
class Forecast:
    window: float = key(0.05, gt=0, lt=1, help="fraction of training steps profiled before "
                        "forecasting")
    warmup_steps: int = key(2, ge=0, unit="steps", help="first steps excluded from the profile")
    warmup_seconds: float | None = key(None, ge=0, unit="s", help="...and at least this long; "
                                       "null: 10 refreshes of the slowest meter")
    min_seconds: float | None = key(None, ge=0, unit="s", help="the window spans at least "
                                    "this long; null: 20 refreshes of the slowest meter")


@dataclass
class Estimate:
    """mode=estimate: predict from completed runs in the store, run nothing."""

    hardware: str | None = key(None, help="hardware_id whose fit to use; null = this machine")
    meter: str | None = key(None, help="meter_source of the fitted runs; null = the most "
                            "common one")
    sweep: str | None = key(None, help="fit on this sweep's runs only; null = every run")
    level: float = key(0.9, gt=0, lt=1, help="prediction interval, from held-out "
                       "(leave-one-config-out) residuals")


@dataclass
class Storage:
    url: str = key("sqlite:///results/sweeper.db", check="url", help="the results database; "
                   "relative SQLite paths are anchored at the launch directory")
    outage_s: float = key(180.0, ge=0, unit="s", help="how long a run waits out an "
                          "unreachable store before giving up (0: at the first failure)")


@dataclass
class Sweeper:
    name: str | None = key(None, check="name", help="sweep name; null derives it from the "
                           "command's overrides")
    resume: bool = key(True, help="skip configs already completed in this sweep")
    progress: bool = key(True, help="show a progress bar while training")
    max_energy_train_j: float | None = key(None, ge=0, unit="J", help="stop training early "
                                           "(status pruned) if the profile forecasts more")
    energy_limit_reason: str | None = key(None, help="why that limit applies (set by the "
                                          "search for its trials)")
    inference_front: Any = key(None, check="front_points", help="[[val_accuracy, "
                               "energy_train_j], ...]: a run that one of these points "
                               "dominates skips its inference benchmark (set by the search "
                               "for its trials: hydra.sweeper.inference=front)")
    confirm_above: int | None = key(500, ge=0, unit="jobs", help="a larger grid first prints "
                                    "its size and estimated energy and asks; null: never")


@dataclass
class SweeperConfig:
    """The app's whole configuration (the hydra node aside)."""

    model: dict[str, Any] = field(default_factory=dict)  # conf/model/<name>.yaml
    dataset: dict[str, Any] = field(default_factory=dict)  # conf/dataset/<name>.yaml
    precision: dict[str, Any] = field(default_factory=dict)  # conf/precision/<name>.yaml
    batch: int = key(64, ge=1, unit="samples", help="training batch size")
    lr: float = key(0.001, gt=0, alone=True, help="learning rate")
    optimizer: str = key("adam", choices=OPTIMIZERS, alone=True, help="the optimizer")
    momentum: float = key(0.9, ge=0, alone=True, help="used by sgd only")
    weight_decay: float = key(0.0, ge=0, alone=True, help="L2 penalty of the optimizer")
    epochs: int = key(10, ge=1, unit="epochs", help="training epochs")
    scheduler: str = key("none", choices=SCHEDULERS, alone=True, help="per epoch; cosine: "
                         "annealed over `epochs`, as the study")
    lr_step: LrStep = group(LrStep)
    loader: Loader = group(Loader)
    seed: int = key(0, ge=0, alone=True, help="seed of data splits, initialisation and shuffling")
    repeat: int = key(0, ge=0, alone=True, help="a repeat index: repeat=0,1,2 measures the "
                      "same config three times")
    device: str = key("auto", check="device", help="where to train")
    num_threads: int | None = key(None, ge=1, help="torch intra-op threads on CPU; null "
                                  "keeps torch's default")
    meter: str = key("auto", check="meter", help="what measures the energy")
    mode: str = key("train", choices=MODES, help="train; forecast: profile only, predict the "
                    "full run; estimate: predict from the store, run nothing; layers: time "
                    "the layer catalog at `batch` for the estimator")
    inference: Inference = group(Inference)
    energy: Energy = group(Energy)
    gpu: Gpu = group(Gpu)
    forecast: Forecast = group(Forecast)
    estimate: Estimate = group(Estimate)
    storage: Storage = group(Storage)
    sweeper: Sweeper = group(Sweeper)
    trial: int | None = key(None, ge=0, help="the search's trial number (set by "
                            "hydra/sweeper=pareto)")


def check_cross_keys(cfg: SweeperConfig) -> None:
    """The rules that read two keys."""
    if cfg.gpu.power_limit is not None and cfg.gpu.power_limit_w is not None:
        raise invalid_value("gpu.power_limit_w", cfg.gpu.power_limit_w,
                            "null while gpu.power_limit is set (one of the two)")


def register() -> None:
    """Put the schema in Hydra's ConfigStore (conf/config.yaml's defaults list names it)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=SweeperConfig, provider="sweeper")


# Called by hydra_plugins.sweeper_schema: Hydra imports every plugin module before its first
# composition, so the schema is there however Hydra starts, and tools that only validate
# (the report CLI) do not pay for it.


# ---------------------------------------------------------------------------------------
# Command-line tools (python -m sweeper.report, sweeper.front): options from a dataclass of
# `key(...)` fields, checked by the same validator, every refusal one line.


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose refusals (an unknown option, a missing value) are one line and exit 2
    as sweeper's own, instead of its usage block."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        options = ", ".join(o for a in self._actions for o in a.option_strings if o != "-h")
        print(f"{self.prog}: error: {message}; allowed: {options}", file=sys.stderr)
        raise SystemExit(2)


def option_parser(node: type, prog: str, description: str) -> OneLineParser:
    """An argument parser of the dataclass `node`: `--name` per field (a bool is a flag, a
    list is repeatable); every value stays text until `parse_options` checks it."""
    parser = OneLineParser(prog=prog, description=description)
    for f in fields(node):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata["help"]
        if default is False:
            parser.add_argument(flag, dest=f.name, action="store_true", help=help_text)
        elif isinstance(default, list):
            parser.add_argument(flag, dest=f.name, action="append", default=[], help=help_text)
        else:
            allowed = rule_of(f).allowed()
            parser.add_argument(flag, dest=f.name, default=None, help=f"{help_text} ({allowed}; "
                                f"default: {default})")
    return parser


def _from_text(value: Any, kind: Any) -> Any:
    """A command-line word read as the field's type where it is one (else kept as text, so
    the validator shows it as given)."""
    if not isinstance(value, str) or kind not in (int, float):
        return value
    try:
        return kind(value)
    except ValueError:
        return value


def parse_options(node: type, parser: argparse.ArgumentParser, argv: Any = None) -> Any:
    """The dataclass `node` from the command line, each value checked by `check_value`
    (a ConfigError naming the option, the value and what is allowed)."""
    args = vars(parser.parse_args(argv))
    values = {}
    for f in fields(node):
        value = args[f.name]
        if value is None and not rule_of(f).nullable:
            continue  # not given: the default
        flag = "--" + f.name.replace("_", "-")
        rule = rule_of(f)
        values[f.name] = check_value(flag, _from_text(value, rule.kind), rule)
    return node(**values)


# ---------------------------------------------------------------------------------------
# The key table (`--help`, README)


def key_table(markdown: bool = False, node: type | None = None, prefix: str = "") -> str:
    """Every key with its default, what it allows and what it means."""
    rows = []
    for name, f in leaves(node, prefix):
        if f.metadata.get("help") is None:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        shown = "null" if default is None else str(default).lower() if isinstance(
            default, bool) else str(default)
        rows.append((name, shown, rule_of(f).allowed(), f.metadata["help"]))
    if markdown:
        lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k}` | `{d}` | {a} | {h} |" for k, d, a, h in rows]
        return "\n".join(lines)
    width = min(max(len(f"{k}={d}") for k, d, *_ in rows), 34)
    return "\n".join(f"  {f'{k}={d}':<{width}}  {h} [{a}]" for k, d, a, h in rows)


README_START = "<!-- keys: generated by `python -m sweeper.config.schema --markdown` -->"
README_END = "<!-- keys: end -->"


def readme_section(markdown_table: str | None = None, start: str = README_START,
                   end: str = README_END) -> str:
    """A README key table between its markers (tests/test_schema.py compares them)."""
    return f"{start}\n{markdown_table or key_table(markdown=True)}\n{end}"


def table_main(argv: list[str], table: Callable[[bool], str], start: str, end: str) -> None:
    """A key table's command: print it (`--markdown` for the README's form), or put it
    between its markers in a file (`--write-readme README.md`)."""
    if "--write-readme" in argv:
        from pathlib import Path

        path = Path(argv[argv.index("--write-readme") + 1])
        text = path.read_text()
        first, last = text.index(start), text.index(end) + len(end)
        path.write_text(text[:first] + readme_section(table(True), start, end) + text[last:])
        return
    print(table("--markdown" in argv))


def main(argv: list[str]) -> None:
    """`python -m sweeper.config.schema [--markdown | --write-readme README.md]`."""
    table_main(argv, lambda markdown: key_table(markdown=markdown), README_START, README_END)


if __name__ == "__main__":
    main(sys.argv[1:])

