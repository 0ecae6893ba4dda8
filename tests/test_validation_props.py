"""Property-based tests of the config validator (sweeper.config.spec.build_spec).

The real config is composed by Hydra once; each example then changes one key of a copy
with OmegaConf, so hundreds of examples stay fast. Every rejection must be a ConfigError
that names the key, shows the bad value and says what is allowed.
"""

from __future__ import annotations

import copy
import math
import re
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from sweeper.config.spec import MAX_SAMPLE_HZ, OPTIMIZERS, PRECISIONS, RunSpec, build_spec
from sweeper.energy.select import CHOICES as METERS
from sweeper.errors import ConfigError
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values a user can get into a config: any scalar type OmegaConf stores. No "$": that
# starts an OmegaConf interpolation, which Hydra rejects before sweeper sees it.
SCALARS = (
    st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.text(max_size=12).filter(lambda s: "$" not in s)
)


@cache
def _base() -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=mlp"])
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _cfg(**changes: Any) -> DictConfig:
    """The composed default config with dotted keys (written key__sub) replaced."""
    cfg = OmegaConf.create(copy.deepcopy(_base()))
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


def _accepts(key: str, value: Any) -> RunSpec | None:
    """The spec if build_spec accepts key=value; otherwise check the error and return None."""
    try:
        return build_spec(_cfg(**{key.replace(".", "__"): value}))
    except ConfigError as exc:
        message = str(exc)
        assert f"'{key}'" in message, message
        assert "allowed" in message, message
        assert repr(value) in message, message  # the value as given, not converted
        return None


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(_as_float(value))


def test_the_default_config_is_valid() -> None:
    spec = build_spec(_cfg())
    assert spec.model == "mlp" and spec.batch >= 1 and spec.lr > 0


@PROPS
@given(st.integers())
def test_batch_accepted_exactly_when_a_positive_integer(batch: int) -> None:
    spec = _accepts("batch", batch)
    assert (spec is not None) == (batch >= 1)
    if spec is not None:
        assert spec.batch == batch and spec.inference.batch == batch  # ${batch}


@PROPS
@given(SCALARS.filter(lambda v: not _is_int(v)))
def test_batch_that_is_not_an_integer_is_rejected(batch: Any) -> None:
    assert _accepts("batch", batch) is None


@PROPS
@example(10**400)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_lr_accepted_exactly_when_finite_and_positive(lr: float) -> None:
    spec = _accepts("lr", lr)
    assert (spec is not None) == (lr > 0 and math.isfinite(_as_float(lr)))
    if spec is not None:
        assert spec.lr == float(lr)


@PROPS
@given(st.sampled_from(["epochs", "seed", "repeat", "inference.batches"]), SCALARS)
def test_integer_keys_accept_exactly_integers_above_their_minimum(key: str, value: Any) -> None:
    minimum = {"epochs": 1, "inference.batches": 1}.get(key, 0)
    accepted = _accepts(key, value) is not None
    assert accepted == (_is_int(value) and value >= minimum)


@PROPS
@example(("energy.sample_hz", 0.0, True, MAX_SAMPLE_HZ), 10**400)  # beyond float range
@example(("energy.sample_hz", 0.0, True, MAX_SAMPLE_HZ), MAX_SAMPLE_HZ)
@example(("energy.sample_hz", 0.0, True, MAX_SAMPLE_HZ), 100_000)
@example(("energy.sample_hz", 0.0, True, MAX_SAMPLE_HZ), 2**53 + 1)  # refused as given
@example(("energy.pue", 1.0, False, None), -(2**53) - 1)  # float() would round it
@given(
    st.sampled_from([("energy.sample_hz", 0.0, True, MAX_SAMPLE_HZ),
                     ("energy.pue", 1.0, False, None),
                     ("weight_decay", 0.0, False, None), ("momentum", 0.0, False, None)]),
    SCALARS,
)
def test_number_keys_accept_exactly_finite_numbers_in_range(
    rule: tuple[str, float, bool, float | None], value: Any
) -> None:
    key, minimum, strict, maximum = rule
    accepted = _accepts(key, value) is not None
    in_range = _is_finite_number(value) and (value > minimum if strict else value >= minimum)
    in_range = in_range and (maximum is None or value <= maximum)
    assert accepted == in_range


@PROPS
@given(
    st.sampled_from([("optimizer", OPTIMIZERS), ("precision.name", PRECISIONS)]),
    st.sampled_from([*OPTIMIZERS, *METERS, *PRECISIONS]) | SCALARS,
)
def test_choice_keys_accept_exactly_their_choices(
    rule: tuple[str, tuple[str, ...]], value: Any
) -> None:
    key, allowed = rule
    try:
        build_spec(_cfg(**{key.replace(".", "__"): value}))
        accepted = True
    except ConfigError as exc:
        accepted = False
        assert f"'{key.removesuffix('.name')}'" in str(exc) and all(
            a in str(exc) for a in allowed
        )
    assert accepted == (value in allowed)


@pytest.mark.parametrize(
    ("value", "stored"),
    [("auto", "auto"), ("nvml", "nvml"), ("nvml+rapl", "nvml+rapl"),
     ("rapl+estimate", "rapl+estimate"), ("NVML + RAPL", "nvml+rapl")],
)
def test_meter_combinations_mean_the_same_in_the_spec_as_in_open_meters(
    value: str, stored: str
) -> None:
    """The spec reads `meter=` with the rule open_meters applies, so a combination that the
    meters accept is never refused before the run (nor one they refuse let through)."""
    assert build_spec(_cfg(meter=value)).meter == stored


@pytest.mark.parametrize("value", ["gpu", "nvml+nvml", "auto+rapl", "", 3])
def test_a_meter_choice_the_meters_refuse_is_refused_before_the_run(value: object) -> None:
    with pytest.raises(ConfigError, match=r"'meter'.*auto, nvml, rapl, estimate.*nvml\+rapl"):
        build_spec(_cfg(meter=value))
    with pytest.raises(ValueError):
        from sweeper.energy.select import parse_choice

        parse_choice(value)  # type: ignore[arg-type]


@PROPS
@example("cuda:\u00b2")  # str.isdigit() is true for superscripts
@example("cuda:\u0663")  # and for other scripts' digits
@given(
    st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
    | st.text(max_size=8).filter(lambda s: "$" not in s).map(lambda s: "cuda:" + s)
    | SCALARS
)
def test_device_accepts_exactly_auto_cpu_cuda_and_cuda_n(device: Any) -> None:
    accepted = _accepts("device", device) is not None
    expected = isinstance(device, str) and bool(re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", device))
    assert accepted == expected


@PROPS
@given(SCALARS)
def test_storage_url_must_look_like_a_url(url: Any) -> None:
    accepted = _accepts("storage.url", url) is not None
    assert accepted == (isinstance(url, str) and "://" in url)


@PROPS
@given(st.integers(-3, 300), st.integers(-2, 6))
def test_model_options_are_checked_before_training(hidden: int, depth: int) -> None:
    try:
        build_spec(_cfg(model__hidden=hidden, model__depth=depth))
        accepted = True
    except ConfigError as exc:
        accepted = False
        assert "model" in str(exc) and ("hidden" in str(exc) or "depth" in str(exc))
    assert accepted == (hidden >= 1 and depth >= 0)


@PROPS
@given(SCALARS)
def test_dataset_fractions_accept_exactly_numbers_in_unit_interval(fraction: Any) -> None:
    accepted = _accepts("dataset.val_fraction", fraction) is not None
    assert accepted == (_is_finite_number(fraction) and 0 <= fraction < 1)


@PROPS
@given(SCALARS)
def test_dataset_max_samples_is_null_or_a_positive_integer(value: Any) -> None:
    accepted = _accepts("dataset.max_samples", value) is not None
    assert accepted == (value is None or (_is_int(value) and value >= 1))


@PROPS
@given(st.text(min_size=1, max_size=12).filter(lambda s: "$" not in s and s != "name"))
def test_unknown_model_and_dataset_options_are_rejected(key: str) -> None:
    cfg = _cfg()
    for group in ("model", "dataset"):
        node = OmegaConf.to_container(cfg[group])
        assert isinstance(node, dict)
        if key in node:
            continue
        bad = _cfg(**{group: {**node, key: 1}})
        with pytest.raises(ConfigError, match=f"unknown option.*{re.escape(group)}"):
            build_spec(bad)


@pytest.mark.parametrize("name", [" ", "\r", "\t\n"])
def test_a_blank_sweep_name_is_refused_with_the_key(name: str) -> None:
    with pytest.raises(ConfigError, match="'sweeper.name'.*non-empty name"):
        build_spec(_cfg(sweeper__name=name))


@PROPS
@given(
    # a blank sweeper.name is refused (its own test); any other name is bookkeeping
    st.text(min_size=1, max_size=20).filter(lambda s: "$" not in s and s.strip() != ""),
    st.booleans(),
    st.integers(1, 4096),
)
def test_identity_ignores_storage_and_bookkeeping_but_not_what_is_measured(
    path: str, resume: bool, batch: int
) -> None:
    base = build_spec(_cfg())
    moved = build_spec(
        _cfg(storage__url=f"sqlite:///{path}", sweeper__resume=resume, sweeper__name=path)
    )
    assert moved.config_hash == base.config_hash
    rebatched = build_spec(_cfg(batch=batch))
    assert (rebatched.config_hash == base.config_hash) == (batch == base.batch)
