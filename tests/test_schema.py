"""The one typed schema (sweeper.config.schema): an unknown key, a wrong type and an
out-of-range value are each refused in one line naming the key, the value and what is
allowed, for a run, a grid, a search, mode=estimate and the report CLI; a key added with
a default leaves identities as they were; the README's key table is the schema's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
from hydra import compose
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sweeper.app.command_line import check_command_line
from sweeper.config import identity as identity_module
from sweeper.config import schema
from sweeper.config.keys import usage_error
from sweeper.config.spec import SINGLE_KEY_CHECKS, build_spec
from sweeper.errors import USER_ERROR_EXIT, ConfigError
from sweeper.search import config as search_config
from sweeper.search.config import ParetoSweeperConf
from sweeper.search.settings import settings_from
from tests.conftest import TINY, run_cli

ROOT = Path(__file__).resolve().parents[1]


def _one_line(text: str, *needles: str) -> None:
    assert "\n" not in text.strip(), text
    for needle in needles:
        assert needle in text, (needle, text)


# --- the command line: run, grid, search, mode=estimate (subprocesses) -------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["epoch=1"], ["'epoch'", "did you mean 'epochs'?"]),
        (["batch=abc"], ["'batch'", "'abc'", "an integer >= 1"]),
        (["-m", "batch=32,abc"], ["'batch'", "'abc'", "an integer >= 1"]),
        (["-m", "lr=0.1,-1"], ["'lr'", "-1", "a finite number > 0"]),
        (["-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=-1"],
         ["'hydra.sweeper.n_trials'", "-1", "an integer >= 0"]),
        (["-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=abc"],
         ["'hydra.sweeper.n_trials'", "'abc'", "an integer >= 0"]),
        (["mode=estimate", "estimate.level=1.5"], ["'estimate.level'", "1.5", "< 1"]),
        (["model=resnet50"], ["'model'", "'resnet50'", "lenet, mlp, mobilenet"]),
        (["-m", "model=mlp,ResNet"], ["'model'", "'ResNet'", "(in the sweep: "]),
        (["-m", "hydra/sweeper=optuna"], ["'hydra/sweeper'", "'optuna'", "basic, grid"]),
    ],
    ids=["run-unknown", "run-type", "grid-type", "grid-range", "search-range", "search-type",
         "estimate-range", "run-group-option", "grid-group-option", "hydra-group-option"],
)
def test_the_command_line_is_refused_in_one_line_before_any_work(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    db = tmp_path / "store.db"
    proc = run_cli([*args, *TINY, f"storage.url=sqlite:///{db}"], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line, nothing else
    _one_line(proc.stderr, "sweeper: error: ", *needles)
    assert not db.exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["+epoch=1"], ["unknown config key 'epoch'; did you mean 'epochs'?"]),
        (["inference.batchs=3"], ["did you mean 'inference.batches'?"]),
        (["-m", "seed=0,1", "repeat=range(-1,2)"], ["'repeat'", "-1", "an integer >= 0"]),
        (["mode=estimate", "batch=0"], ["'batch'", "0", "an integer >= 1"]),
        (["mode=estimat"], ["'mode'", "'estimat'", "train, forecast, estimate"]),
        (["device=tpu"], ["'device'", "'tpu'", "cuda:N"]),
        (["loader.workers=many"], ["'loader.workers'", "'many'", "auto or an integer >= 0"]),
        (["energy.sample_hz=5000"], ["'energy.sample_hz'", "5000", "<= 1000"]),
        (["hydra/sweeper=pareto", "hydra.sweeper.objective=joules"],
         ["'hydra.sweeper.objective'", "'joules'", "energy_train_j"]),
        (["hydra/sweeper=pareto", "hydra.sweeper.target_accuracy=2"],
         ["'hydra.sweeper.target_accuracy'", "2", "<= 1"]),
    ],
)
def test_each_override_and_each_value_of_a_sweep_is_checked(
    args: list[str], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        check_command_line(args)
    _one_line(str(info.value), *needles)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("epochs: many", ["'epochs'", "'many'", "an integer >= 1"]),
        ("inference:\n  every_epoch: 3", ["'inference.every_epoch'", "3", "true or false"]),
        ("sweeper:\n  resume: 1", ["'sweeper.resume'", "1", "true or false"]),
        ("epochz: 2", ["unknown config key 'epochz'; did you mean 'epochs'?"]),
    ],
    ids=["type", "int-as-bool", "nested-int-as-bool", "unknown"],
)
def test_a_preset_is_checked_key_by_key_in_one_line(
    tmp_path: Path, body: str, needles: list[str]
) -> None:
    """A preset's keys meet the command line's validator: Hydra would refuse a wrong type
    in several lines, and OmegaConf would read 3 as true for a bool field."""
    (tmp_path / "experiment").mkdir()
    preset = tmp_path / "experiment" / "mine.yaml"
    preset.write_text(f"# @package _global_\n{body}\n")
    with pytest.raises(ConfigError) as info:
        check_command_line(["--config-dir", str(tmp_path), "+experiment=mine"])
    _one_line(str(info.value), *needles, f"(in the preset {preset})")
    preset.write_text("# @package _global_\nepochs: 2\ninference:\n  every_epoch: true\n"
                      "dataset:\n  max_samples: 50\n")
    check_command_line(["--config-dir", str(tmp_path), "+experiment=mine"])


def test_every_shipped_preset_passes_the_check() -> None:
    presets = sorted(Path(__file__).resolve().parents[1].glob("conf/experiment/*.yaml"))
    assert len(presets) >= 5
    for preset in presets:
        check_command_line([f"+experiment={preset.stem}"])


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["model=mlp", "model.hiden=3"], ["'model.hiden' for model 'mlp'", "depth, hidden",
                                          "+model.hiden=VALUE"]),
        (["model.hiden=3"], ["for model 'cnn'"]),  # conf/config.yaml's default
        (["-m", "model=cnn,mlp", "model.depth=3"], ["'model.depth' for model 'cnn'"]),
        (["+experiment=study", "dataset.max_samplez=3"],  # the preset's override /dataset
         ["'dataset.max_samplez' for dataset 'cifar10'", "max_samples"]),
    ],
    ids=["chosen", "default", "each-of-a-sweep", "preset-default"],
)
def test_a_key_the_chosen_option_lacks_is_one_line(args: list[str], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        check_command_line(args)
    _one_line(str(info.value), "unknown option", *needles)


def test_a_preset_and_an_option_key_are_refused_before_any_work(tmp_path: Path) -> None:
    """Through the real command: one line, exit 2, nothing written."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nepochs: many\n")
    db = tmp_path / "store.db"
    for args in (["--config-dir", str(tmp_path / "conf"), "+experiment=mine"],
                 ["model=mlp", "model.hiden=3"]):
        proc = run_cli([*args, *TINY, f"storage.url=sqlite:///{db}"], cwd=tmp_path)
        assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("sweeper: error: ")
        assert not db.exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["precision=fp8"], ["'precision'", "'fp8'", "allowed: bf16, fp16, fp32"]),
        (["dataset=cifar100"], ["'dataset'", "'cifar100'", "cifar10, digits"]),
        (["+experiment=studdy"], ["'experiment'", "'studdy'", "paper, study,"]),
        (["-m", "model=choice(mlp,vitt)"], ["'model'", "'vitt'", "(in the sweep: "]),
        (["precision=16"], ["'precision'", "'16'"]),
    ],
)
def test_a_group_option_that_does_not_exist_is_one_line(
    args: list[str], needles: list[str]
) -> None:
    """Hydra refuses it in some 25 lines (the options one per line, its search path)."""
    with pytest.raises(ConfigError) as info:
        check_command_line(args)
    _one_line(str(info.value), "invalid value for ", *needles)


def test_hydra_s_launcher_sweeper_and_sampler_options_are_checked_with_its_plugins() -> None:
    """Their options come from sweeper's conf/ and from the installed plugins (submitit's
    launchers, Hydra's basic ones); the search's schema node is not offered."""
    for args in (["-m", "hydra/launcher=submitit_local"], ["-m", "hydra/launcher=local"],
                 ["-m", "hydra/sweeper=basic"], ["-m", "hydra/sweeper=grid"],
                 ["-m", "hydra/sweeper=pareto", "hydra/sweeper/sampler=nsga2"]):
        check_command_line(args)
    for args, needles in (
        (["-m", "hydra/sweeper=optuna"], ["'hydra/sweeper'", "'optuna'",
                                          "allowed: basic, grid, pareto"]),
        (["-m", "hydra/launcher=submitit_locall"], ["'submitit_locall'", "submitit_local"]),
        (["-m", "hydra/sweeper=pareto", "hydra/sweeper/sampler=nsga3"],
         ["'hydra/sweeper/sampler'", "'nsga3'", "allowed: frontier, nsga2, random, tpe"]),
    ):
        with pytest.raises(ConfigError) as info:
            check_command_line(args)
        _one_line(str(info.value), *needles)
        assert "schema" not in str(info.value) and "sampler/" not in str(info.value)


def test_a_group_option_is_looked_for_where_hydra_will_look(tmp_path: Path) -> None:
    """A --config-dir's options count; a command that moves the search path elsewhere is
    Hydra's to judge; a glob and a removal name no option."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "wide_mlp.yaml").write_text("name: mlp\nhidden: 512\n")
    check_command_line(["--config-dir", str(tmp_path), "model=wide_mlp"])
    (tmp_path / "experiment" / "lab").mkdir(parents=True)  # Hydra reads lab/fast.yaml
    (tmp_path / "experiment" / "lab" / "fast.yaml").write_text("# @package _global_\n")
    check_command_line(["--config-dir", str(tmp_path), "+experiment=lab/fast"])
    with pytest.raises(ConfigError, match="'lab/slow'; allowed: lab/fast, paper"):
        check_command_line(["--config-dir", str(tmp_path), "+experiment=lab/slow"])
    with pytest.raises(ConfigError, match="'wide_mlp'; allowed: .*cnn"):
        check_command_line(["model=wide_mlp"])
    check_command_line(["hydra.searchpath=[file://" + str(tmp_path) + "]", "model=wide_mlp"])
    check_command_line(["--config-path", str(tmp_path), "model=wide_mlp"])
    check_command_line(["-m", "model=glob(res*)", "~precision"])


def test_group_options_interpolations_and_intervals_are_left_to_their_own_checks() -> None:
    check_command_line(["-m", "model=mlp,cnn", "model.hidden=8", "+experiment=paper",
                        "inference.batch=${batch}", "hydra/sweeper=pareto",
                        "lr=interval(0.001,0.1)", "hydra.sweeper.sampler.population_size=8",
                        "meter=nvml+rapl", "loader.workers=auto", "energy.gpus=[0,1]",
                        "sweeper.name=123", "--cfg", "job"])


# --- the Compose API: Hydra's own refusals read as one line --------------------------------


@pytest.mark.usefixtures("hydra_conf")
@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("epoch=1", ["unknown config key 'epoch'; did you mean 'epochs'?"]),
        ("batch=abc", ["invalid value for 'batch': 'abc'; allowed: an integer >= 1"]),
        ("inference.every_epoch=maybe", ["'inference.every_epoch'", "true or false"]),
        ("energy.idle.secs=1", ["did you mean 'energy.idle.seconds'?"]),
    ],
)
def test_hydra_refusals_of_keys_and_types_read_as_one_line(
    override: str, needles: list[str]
) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose("config", overrides=[override])
    error = usage_error(info.value)
    assert error is not None
    _one_line(str(error), *needles)


@pytest.mark.usefixtures("hydra_conf")
@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("+epoch=1", ["unknown config key 'epoch'"]),
        ("lr=-1", ["'lr'", "-1", "a finite number > 0"]),
        ("mode=estimate", []),
        ("gpu.power_limit=3", ["'gpu.power_limit'", "3", "(0, 2]"]),
        ("estimate.level=1", ["'estimate.level'", "1", "< 1"]),
    ],
)
def test_build_spec_refuses_out_of_range_values_in_one_line(
    override: str, needles: list[str]
) -> None:
    if not needles:
        assert build_spec(compose("config", overrides=[override])).mode == "estimate"
        return
    with pytest.raises(ConfigError) as info:
        build_spec(compose("config", overrides=[override]))
    _one_line(str(info.value), *needles)


@pytest.mark.usefixtures("hydra_conf")
def test_the_either_or_rule_of_the_power_limit() -> None:
    with pytest.raises(ConfigError, match="'gpu.power_limit_w'.*one of the two"):
        build_spec(compose("config", overrides=["gpu.power_limit=0.8", "gpu.power_limit_w=200"]))
    spec = build_spec(compose("config", overrides=["gpu.power_limit=auto"]))
    assert spec.power_limit.auto and spec.gpu.power_limit == "auto"


def test_search_settings_use_the_same_validator() -> None:
    for raw, needles in (({"n_trials": "abc"}, ["'hydra.sweeper.n_trials'", "'abc'"]),
                         ({"n_jobs": 0}, ["'hydra.sweeper.n_jobs'", "an integer >= 1"]),
                         ({"seed": -1}, ["'hydra.sweeper.seed'", "null or an integer >= 0"])):
        with pytest.raises(ConfigError) as info:
            settings_from(raw)
        _one_line(str(info.value), *needles)


# --- the report CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--run", "abc"], ["'--run'", "'abc'", "an integer >= 1"]),
        (["--run", "0"], ["'--run'", "0", "an integer >= 1"]),
        (["--energy", "gros"], ["'--energy'", "'gros'", "gross, net"]),
        (["--storage", "nowhere"], ["'--storage'", "'nowhere'", "SQLAlchemy URL"]),
        (["--sweeps", "x"], ["unrecognized arguments: --sweeps", "--sweep"]),
    ],
)
def test_the_report_cli_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], needles: list[str]
) -> None:
    from sweeper.report.__main__ import main as report_main

    with pytest.raises(SystemExit) as info:
        report_main([*argv, "--out", str(tmp_path / "report")])
    assert info.value.code == USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert err.startswith("sweeper-report: error: ")
    _one_line(err, *needles)
    assert not (tmp_path / "report").exists()


def test_the_front_cli_refuses_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from sweeper.search.cli import main as front_main

    with pytest.raises(SystemExit) as info:
        front_main(["--storage", "nowhere"])
    assert info.value.code == USER_ERROR_EXIT
    _one_line(capsys.readouterr().err, "'--storage'", "'nowhere'")


# --- the schema itself ------------------------------------------------------------------------


def test_every_key_says_what_it_means_and_what_it_allows() -> None:
    for name, f in schema.leaves():
        if name in schema.GROUPS:
            continue
        assert f.metadata.get("help"), name
        assert schema.rule_of(f).allowed(), name
    for f in fields(ParetoSweeperConf):
        if not f.name.startswith("_") and f.name not in ("params", "sampler"):
            assert f.metadata.get("help"), f.name


def test_the_schemas_defaults_agree_with_the_store_and_interpolate() -> None:
    from sweeper.store.db import DEFAULT_OUTAGE_S
    from sweeper.store.schema import NAME_LENGTH

    assert schema.NAME_LENGTH == NAME_LENGTH
    assert schema.Storage().outage_s == DEFAULT_OUTAGE_S
    cfg = OmegaConf.structured(schema.SweeperConfig)
    cfg.batch = 32
    assert cfg.inference.batch == 32  # `${batch}` in an int field
    assert set(SINGLE_KEY_CHECKS) == {"lr", "optimizer", "momentum", "weight_decay",
                                      "scheduler", "seed", "repeat"}


@dataclass
class NewerEnergy(schema.Energy):
    new_meter_hz: float = schema.key(4.0, gt=0, help="a key a newer sweeper adds")


@dataclass
class Newer(schema.SweeperConfig):
    """The schema as a newer sweeper might have it: two keys more, with defaults."""

    energy: NewerEnergy = field(default_factory=NewerEnergy)  # type: ignore[assignment]
    new_key: int = schema.key(3, ge=0, help="a key a newer sweeper adds")


@pytest.mark.usefixtures("hydra_conf")
def test_a_key_added_to_the_schema_with_a_default_keeps_every_identity() -> None:
    overrides = ["model=mlp", "batch=32", "+experiment=paper"]
    before = build_spec(compose("config", overrides=overrides)).config_hash

    store = ConfigStore.instance()
    store.store(name="config_schema", node=Newer, provider="sweeper")
    identity_module._defaults.cache_clear()
    try:
        cfg = compose("config", overrides=overrides)
        assert cfg.new_key == 3 and cfg.energy.new_meter_hz == 4.0
        resolved = json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True)))
        resolved.pop("hydra", None)
        assert identity_module.config_hash(resolved) == before
        assert identity_module.config_hash(resolved | {"new_key": 4}) != before
    finally:
        schema.register()
        store.store(name="config_schema", node=schema.SweeperConfig, provider="sweeper")
        identity_module._defaults.cache_clear()


@pytest.mark.parametrize(
    ("module", "table"),
    [(schema, lambda: schema.key_table(markdown=True)),
     (search_config, lambda: search_config.search_key_table(markdown=True))],
    ids=["app", "search"],
)
def test_the_readme_key_tables_are_the_schemas(module: object, table: object) -> None:
    readme = (ROOT / "README.md").read_text()
    start_marker, end_marker = module.README_START, module.README_END  # type: ignore[attr-defined]
    start = readme.index(start_marker)
    end = readme.index(end_marker) + len(end_marker)
    assert readme[start:end] == schema.readme_section(table(), start_marker, end_marker), (  # type: ignore[operator]
        f"regenerate it: python -m {module.__name__} --write-readme README.md")  # type: ignore[attr-defined]


def test_help_lists_every_key_without_importing_torch(tmp_path: Path) -> None:
    proc = run_cli(["--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, _ in schema.leaves():
        if name not in schema.GROUPS:
            assert f"  {name}=" in proc.stdout, name
    for name, f in schema.leaves(ParetoSweeperConf, "hydra.sweeper."):
        if f.metadata.get("help") is not None:  # params and sampler: their own syntax
            assert f"  {name}=" in proc.stdout, name


def test_a_group_option_an_installed_plugin_may_add_is_left_to_hydra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SearchPathPlugin (a lab's own presets, say) adds config folders only Hydra reads."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    class LabPresets(SearchPathPlugin):
        def manipulate_search_path(self, search_path: object) -> None:  # pragma: no cover
            pass

    real = Plugins.discover

    def discover(self: Plugins, kind: type | None = None) -> list[type]:
        found = real(self, kind)
        return [*found, LabPresets] if kind is SearchPathPlugin else found

    with pytest.raises(ConfigError):
        check_command_line(["+experiment=lab_preset"])
    monkeypatch.setattr(Plugins, "discover", discover)
    check_command_line(["+experiment=lab_preset"])
