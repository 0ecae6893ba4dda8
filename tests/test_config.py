"""Real Hydra composition of every config group option, and validation of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from sweeper.config.keys import usage_error
from sweeper.config.spec import PRECISIONS, build_spec
from sweeper.datasets import DATASET_NAMES
from sweeper.errors import ConfigError
from sweeper.models import MODEL_NAMES

CONF = Path(__file__).resolve().parents[1] / "conf"


pytestmark = pytest.mark.usefixtures("hydra_conf")  # every test composes the config tree


def _compose(*overrides: str) -> DictConfig:
    """The composed config; a key or type the schema refuses raises sweeper's one line."""
    try:
        return compose(config_name="config", overrides=list(overrides))
    except ConfigCompositionException as exc:
        error = usage_error(exc)
        if error is None:
            raise
        raise error from None


def test_group_options_on_disk_match_the_code() -> None:
    assert {p.stem for p in (CONF / "model").glob("*.yaml")} == set(MODEL_NAMES)
    assert {p.stem for p in (CONF / "dataset").glob("*.yaml")} == set(DATASET_NAMES)
    assert {p.stem for p in (CONF / "precision").glob("*.yaml")} == set(PRECISIONS)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_option_composes(model: str) -> None:
    # On CIFAR-10's 3x32x32, which every model takes (most of the study's networks need it).
    spec = build_spec(_compose(f"model={model}", "dataset=cifar10"))
    assert spec.model == model
    assert "name" not in spec.model_options


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_every_dataset_option_composes(dataset: str) -> None:
    spec = build_spec(_compose(f"dataset={dataset}"))
    assert spec.dataset == dataset


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_option_composes(precision: str) -> None:
    assert build_spec(_compose(f"precision={precision}")).precision == precision


def test_short_top_level_overrides() -> None:
    spec = build_spec(
        _compose("batch=128", "lr=0.01", "optimizer=sgd", "epochs=2", "seed=3", "device=cpu",
                 "meter=estimate", "storage.url=sqlite:///x.db")
    )
    assert (spec.batch, spec.lr, spec.optimizer, spec.epochs, spec.seed) == (128, 0.01, "sgd", 2, 3)
    assert (spec.device, spec.meter, spec.storage.url) == ("cpu", "estimate", "sqlite:///x.db")
    assert spec.inference.batch == 128  # follows batch by interpolation


def test_unknown_group_option_lists_the_choices() -> None:
    with pytest.raises(ConfigCompositionException, match="resnet"):
        _compose("model=transformer9000")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("batch=0", "batch"),
        ("batch=-4", "batch"),
        ("lr=-0.1", "lr"),
        ("lr=0", "lr"),
        ("epochs=0", "epochs"),
        ("optimizer=lion", "optimizer"),
        ("device=tpu", "device"),
        ("meter=wattmeter", "meter"),
        ("energy.sample_hz=0", "energy.sample_hz"),
        ("energy.pue=0.5", "energy.pue"),
        ("forecast.window=1.5", "forecast.window"),
        ("storage.url=results.db", "storage.url"),
        ("batch=abc", "batch"),
        ("inference.protocol=forever", "inference.protocol"),
        ("inference.min_seconds=-1", "inference.min_seconds"),
        ("inference.passes=0", "inference.passes"),
        ("energy.idle.seconds=-2", "energy.idle.seconds"),
        ("energy.busy_other_cpu_pct=-5", "energy.busy_other_cpu_pct"),
        ("forecast.min_seconds=-1", "forecast.min_seconds"),
    ],
)
def test_bad_values_name_key_value_and_allowed(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_spec(_compose(override))
    message = str(info.value)
    assert f"'{key}'" in message and "allowed" in message
    assert repr(override.split("=", 1)[1]).strip("'") in message


def test_identity_ignores_storage_and_bookkeeping() -> None:
    a = build_spec(_compose("storage.url=sqlite:///a.db", "sweeper.progress=false"))
    b = build_spec(_compose("storage.url=sqlite:///b.db"))
    c = build_spec(_compose("batch=32"))
    assert a.config_hash == b.config_hash
    assert a.config_hash != c.config_hash


def test_grid_jobs_include_a_presets_sweeper_params() -> None:
    from sweeper.app.callbacks import grid_job_overrides

    cfg = compose(
        config_name="config",
        overrides=["+experiment=paper", "epochs=1"],
        return_hydra_config=True,
    )
    jobs = grid_job_overrides(cfg)
    assert len(jobs) == 4 * 4 * 2 * 2
    assert all("epochs=1" in job for job in jobs)
    assert {o for job in jobs for o in job if o.startswith("model=")} == {
        "model=cnn", "model=vgg", "model=resnet", "model=mobilenet"
    }
