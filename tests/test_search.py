"""The Pareto search (`hydra/sweeper=pareto`): the search-space parser and limits as unit
tests, then real Optuna studies of tiny digits trainings through the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from sweeper.config.schema import check_value, field_of, rule_of
from sweeper.errors import ConfigError
from sweeper.predict.forecast import ProfileWindow
from sweeper.run.inference_gate import dominating_point, skip_reason
from sweeper.run.stopping import EarlyStop, EnergyLimit, energy_limit, guard_steps
from sweeper.search.hypervolume import pareto_front
from sweeper.search.loop import job_overrides
from sweeper.search.settings import settings_from
from sweeper.search.space import format_value, parse_space
from sweeper.search.study import outcome_of_run, trial_energy_limit
from sweeper.store import Run
from tests.conftest import CONF_DIR, LONG_RUN, ROOT, TINY, kill_mid_training, run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)

# --- search space ---------------------------------------------------------------------


def test_hydra_sweep_syntax_maps_to_optuna_distributions() -> None:
    space = parse_space({
        "model": "choice(resnet,vit,cnn)",
        "batch": "choice(16,32,64,128)",
        "lr": "tag(log, interval(1e-4, 1e-2))",
        "epochs": "range(1,4)",
        "model.width": "tag(int, interval(8, 64))",
        "momentum": "range(0.5,1.0,0.25)",
        "seed": "3",
    })
    d = space.distributions
    assert d["model"] == CategoricalDistribution(["resnet", "vit", "cnn"])
    assert d["batch"] == CategoricalDistribution([16, 32, 64, 128])
    assert d["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["epochs"] == IntDistribution(1, 3)  # Hydra's range excludes its stop
    assert d["model.width"] == IntDistribution(8, 64)
    assert d["momentum"] == CategoricalDistribution([0.5, 0.75])
    assert space.fixed == ["seed=3"]


def test_command_line_sweeps_join_and_plain_overrides_replace() -> None:
    space = parse_space(
        {"model": "choice(resnet,vit)", "epochs": "range(1,4)"},
        ["model=mlp,cnn", "epochs=1", "+extra=2", "batch=32,64"],
    )
    assert space.distributions["model"] == CategoricalDistribution(["mlp", "cnn"])
    assert space.distributions["batch"] == CategoricalDistribution([32, 64])
    assert "epochs" not in space.distributions
    assert space.fixed == ["epochs=1", "+extra=2"]
    overrides = space.overrides({"model": "cnn", "batch": 64})
    assert overrides == ["epochs=1", "+extra=2", "model=cnn", "batch=64"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"lr": "tag(log, interval(0, 1))"}, "lr"),
        ({"lr": "tag(loog, interval(0.1, 1))"}, "unknown tag"),
        ({"epochs": "range(3,3)"}, "empty"),
        ({"model": "choice(a,"}, "cannot parse"),
    ],
)
def test_bad_search_parameters_are_refused(params: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_space(params)


@pytest.mark.parametrize("value", ["resnet", "1", "true", "null", "it's", "a,b", 1e-05, 64, True])
def test_sampled_values_round_trip_through_hydra(value: object) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"k={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_settings_are_validated_with_the_key_named() -> None:
    assert settings_from({}).sampler == "frontier"  # the default (benchmarks/README.md)
    with pytest.raises(ConfigError, match="hydra.sweeper.sampler"):
        settings_from({"sampler": "cmaes"})
    with pytest.raises(ConfigError, match="hydra.sweeper.objective"):
        settings_from({"objective": "accuracy"})
    with pytest.raises(ConfigError, match="hydra.sweeper.energy_budget_j"):
        settings_from({"energy_budget_j": -1})
    with pytest.raises(ConfigError, match="hydra.sweeper.storage.*SQLAlchemy URL"):
        settings_from({"storage": "nowhere"})


def test_samplers_are_configs_with_a_target() -> None:
    import optuna

    from sweeper.search.samplers import make_sampler, sampler_names

    assert {"frontier", "nsga2", "tpe", "random"} <= set(sampler_names())
    nsga2 = make_sampler("nsga2", seed=3)
    assert isinstance(nsga2, optuna.samplers.NSGAIISampler) and nsga2._population_size == 8
    assert isinstance(make_sampler("tpe", seed=None), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", seed=1), optuna.samplers.RandomSampler)
    # Any Optuna sampler by _target_, with its own arguments.
    tpe = make_sampler({"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 3}, seed=2)
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 3


def test_a_sampler_argument_is_checked_against_its_target() -> None:
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler.populaton_size.*population_s"):
        settings_from({"sampler": {"_target_": "optuna.samplers.NSGAIISampler",
                                   "populaton_size": 16}})
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler.seed.*hydra.sweeper.seed"):
        settings_from({"sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 1}})
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler._target_"):
        settings_from({"sampler": {"_target_": "optuna.samplers.NoSuchSampler"}})


def test_sampler_group_and_its_arguments_compose_from_the_command_line() -> None:
    """`hydra/sweeper/sampler=nsga2 hydra.sweeper.sampler.population_size=16`, as Hydra users
    expect, reaches the Optuna sampler; a plain name still picks a file."""
    import optuna
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from sweeper.search.samplers import make_sampler

    def sweeper_node(*overrides: str) -> dict:
        GlobalHydra.instance().clear()
        with initialize_config_module("sweeper.conf", version_base="1.3"):
            cfg = compose("config", overrides=["hydra/sweeper=pareto", *overrides],
                          return_hydra_config=True)
        GlobalHydra.instance().clear()
        node = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
        node.pop("_target_")
        return node

    default = settings_from(sweeper_node())
    assert default.sampler == "frontier" and default.sampler_config["min_gain"] == 0.002
    tuned = settings_from(sweeper_node("hydra/sweeper/sampler=nsga2",
                                       "hydra.sweeper.sampler.population_size=16"))
    sampler = make_sampler(tuned.sampler_config, seed=0)
    assert isinstance(sampler, optuna.samplers.NSGAIISampler) and sampler._population_size == 16
    assert tuned.sampler == "nsga2"
    by_name = settings_from(sweeper_node("hydra.sweeper.sampler=tpe"))
    assert by_name.sampler == "tpe" and by_name.sampler_config["n_startup_trials"] == 10
    frontier = settings_from(sweeper_node("hydra.sweeper.sampler.min_gain=0.01"))
    assert frontier.sampler_config["min_gain"] == 0.01


# --- early stopping and what a run tells its trial -------------------------------------


def test_forecast_above_the_limit_stops_training() -> None:
    joules = iter(range(0, 1000, 10))  # 10 J per reading
    profile = ProfileWindow(100, 0.05, 2, lambda: float(next(joules)))
    on_step = guard_steps(profile, EnergyLimit(50.0, "remaining study budget"))
    profile.start()
    with pytest.raises(EarlyStop, match="remaining study budget") as caught:
        for step in range(1, 101):
            on_step(step)
    assert caught.value.forecast_j > 50.0
    assert profile.result is not None and profile.result.total_steps == 100


def test_limit_is_read_from_the_run_config() -> None:
    assert energy_limit({"sweeper": {"max_energy_train_j": None}}) is None
    limit = energy_limit({"sweeper": {"max_energy_train_j": 5, "energy_limit_reason": "cap"}})
    assert limit == EnergyLimit(5.0, "cap")
    with pytest.raises(ConfigError, match="max_energy_train_j"):
        energy_limit({"sweeper": {"max_energy_train_j": "lots"}})


def _trial(number: int, acc: float, energy_j: float, spent_j: float) -> optuna.trial.FrozenTrial:
    trial = create_trial(values=[acc, energy_j], user_attrs={"energy_spent_j": spent_j})
    trial.number = number
    return trial


def test_trial_limit_is_the_tightest_rule() -> None:
    settings = settings_from({"energy_budget_j": 100.0, "max_trial_energy_j": 80.0})
    trials = [_trial(0, 0.9, 30.0, 30.0), _trial(1, 0.95, 20.0, 20.0)]
    limit = trial_energy_limit(settings, trials, batch_size=1)
    assert limit is not None and limit.limit_j == 50.0 and "budget" in limit.reason
    # A trial at the accuracy target bounds the rest: spending more cannot beat it.
    settings = settings_from({"target_accuracy": 0.95})
    limit = trial_energy_limit(settings, trials, batch_size=1)
    assert limit is not None and limit.limit_j == 20.0 and "trial 1" in limit.reason
    assert trial_energy_limit(settings_from({}), trials, batch_size=1) is None


# --- the inference benchmark, measured only where a trial can join the front -----------


def test_a_point_dominates_only_when_better_in_one_objective_and_no_worse_in_the_other() -> None:
    front = [(0.90, 2.0), (0.95, 5.0)]
    assert dominating_point(front, 0.85, 3.0) == (0.90, 2.0)
    assert dominating_point(front, 0.93, 6.0) == (0.95, 5.0)
    assert dominating_point(front, 0.90, 2.0) is None  # equal to a front point: it ties
    assert dominating_point(front, 0.96, 9.0) is None  # more accurate than all: new front
    assert dominating_point(front, 0.80, 1.0) is None  # cheaper than all: new front
    for accuracy, energy_j in ((None, 3.0), (0.5, None), (float("nan"), 3.0)):
        assert dominating_point(front, accuracy, energy_j) is None  # nothing to judge by
    assert dominating_point((), 0.1, 99.0) is None
    # Judged at the fewest joules the trial's E_tr may be: 3 J +- 1.5 J might be 1.5 J, which
    # (0.90, 2 J) does not dominate; +- 0.5 J keeps it dominated.
    assert dominating_point(front, 0.85, 3.0, uncertainty_j=1.5) is None
    assert dominating_point(front, 0.85, 3.0, uncertainty_j=0.5) == (0.90, 2.0)
    assert "3 J +- 0.5 J of training" in skip_reason((0.90, 2.0), 0.85, 3.0, 0.5)


def test_the_front_reaches_the_trial_as_an_override_hydra_reads_back_exactly() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = parse_space({"model": "choice(mlp,cnn)"}, [])
    trial = optuna.create_study(directions=["maximize", "minimize"]).ask(space.distributions)
    front = pareto_front([(0.9123456789, 2.000001), (0.95, 5.5), (0.8, 9.0)])
    overrides = job_overrides(space, trial, None, front)
    parsed = OverridesParser.create().parse_overrides(overrides)
    sent = {o.get_key_element(): o.value() for o in parsed}
    points = sent["++sweeper.inference_front"]
    assert [tuple(p) for p in points] == [(0.9123456789, 2.000001), (0.95, 5.5)]
    rule = rule_of(field_of("sweeper.inference_front"))
    assert check_value("sweeper.inference_front", points, rule) == tuple(front)
    assert not any("inference_front" in o for o in job_overrides(space, trial, None))
    # an empty front still tells the job its objective needs no E_in
    assert "++sweeper.inference_front=[]" in job_overrides(space, trial, None, [])


@pytest.mark.parametrize("value", [[[2, 1]], [[0.5]], [[0.5, -1]], "front", [["a", 1]]])
def test_a_malformed_front_is_refused_naming_the_key(value: object) -> None:
    rule = rule_of(field_of("sweeper.inference_front"))
    with pytest.raises(ConfigError, match="sweeper.inference_front") as caught:
        check_value("sweeper.inference_front", value, rule)
    assert "\n" not in str(caught.value) and "val_accuracy, energy_train_j" in str(caught.value)


def test_only_a_training_energy_objective_lets_trials_skip_inference() -> None:
    assert settings_from({}).skips_dominated_inference  # the default: objective E_tr
    assert not settings_from({"inference": "all"}).skips_dominated_inference
    assert not settings_from({"objective": "energy_total_j"}).skips_dominated_inference
    with pytest.raises(ConfigError, match="hydra.sweeper.inference"):
        settings_from({"inference": "some"})


@pytest.mark.slow
def test_a_run_the_front_dominates_skips_its_inference_benchmark(tmp_path: Path) -> None:
    common = ["model=mlp", *TINY]
    skipped = run_cli([*common, "sweeper.name=skip", "++sweeper.inference_front=[[1.0,0.0]]"],
                      cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    measured = run_cli([*common, "sweeper.name=keep", "++sweeper.inference_front=[[0.0,1e9]]"],
                       cwd=tmp_path)
    assert measured.returncode == 0, measured.stderr[-3000:]
    db = tmp_path / "results" / "sweeper.db"
    rows = {name: row for name, *row in _rows(
        db, "select s.name, r.id, r.status, r.stop_reason, r.energy_inference_j, "
        "r.energy_inference_uncertainty_j, r.energy_per_inference_sample_j, "
        "r.inference_samples, r.test_accuracy, r.energy_train_j, r.energy_total_j "
        "from runs r join sweeps s on s.id = r.sweep_id")}
    run_id, status, reason, e_in, e_in_unc, per_sample, samples, test_acc, e_tr, total = (
        rows["skip"])
    assert status == "completed" and test_acc is not None
    assert reason.startswith("inference benchmark skipped") and "(1.0000, 0 J)" in reason
    assert (e_in, e_in_unc, per_sample, samples) == (None, None, None, None)  # not 0 J
    assert e_tr > 0 and total >= e_tr
    kinds = [k for (k,) in _rows(db, f"select kind from phases where run_id = {run_id}")]
    assert "inference" not in kinds and "test" in kinds and "train_epoch" in kinds
    run_id, status, reason, e_in, _, per_sample, samples, *_ = rows["keep"]
    assert status == "completed" and reason is None and e_in > 0 and samples > 0
    assert "inference" in [k for (k,) in _rows(
        db, f"select kind from phases where run_id = {run_id}")]
    # Resumed on the same sweep: a trial sent a front (even an empty one) takes the skipped
    # run as done; a job that needs E_in (a grid, no front) runs the configuration again.
    for extra in ("++sweeper.inference_front=[]", None):
        again = run_cli([*common, "sweeper.name=skip", *([extra] if extra else [])],
                        cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
    runs = _rows(db, "select r.id, r.stop_reason, r.energy_inference_j from runs r "
                 "join sweeps s on s.id = r.sweep_id where s.name = 'skip' order by r.id")
    assert [r[0] for r in runs][0] == rows["skip"][0] and len(runs) == 2
    assert runs[1][1] is None and runs[1][2] > 0


def _run(**values: object) -> Run:
    base = {"id": 7, "status": "completed", "val_accuracy": 0.9, "energy_train_j": 12.0,
            "energy_total_j": 15.0, "co2_g": 0.01, "meter_source": "estimate"}
    return Run(**{**base, **values})


def test_run_rows_become_trial_outcomes() -> None:
    done = outcome_of_run(_run(), "energy_total_j", reused=False)
    assert done.state == TrialState.COMPLETE and done.values == (0.9, 15.0)
    assert done.attrs["run_id"] == 7 and done.attrs["meter_source"] == "estimate"
    assert done.attrs["energy_spent_j"] == 15.0
    reused = outcome_of_run(_run(), "energy_train_j", reused=True)
    assert reused.values == (0.9, 12.0) and reused.attrs["energy_spent_j"] == 0.0
    assert outcome_of_run(_run(status="failed"), "co2_g", reused=False).state == TrialState.FAIL
    nan = outcome_of_run(_run(val_accuracy=float("nan")), "co2_g", reused=False)
    assert nan.state == TrialState.FAIL
    pruned = outcome_of_run(_run(status="pruned", stop_reason="forecast"), "co2_g", reused=False)
    assert pruned.state == TrialState.PRUNED and pruned.attrs["stop_reason"] == "forecast"
    # A run of an energy_train_j search that skipped its inference benchmark, reaching a
    # trial of a search that minimises an inference energy (its job runs the configuration
    # again; should such a run still arrive): failed, saying why.
    skipped = _run(stop_reason=skip_reason((0.95, 2.0), 0.9, 12.0),
                   energy_per_inference_sample_j=None)
    assert outcome_of_run(skipped, "energy_train_j", reused=True).state == TrialState.COMPLETE
    failed = outcome_of_run(skipped, "energy_per_inference_sample_j", reused=True)
    assert failed.state == TrialState.FAIL
    assert "skipped its inference benchmark" in failed.attrs["error"]
    assert "sweeper.name" in failed.attrs["error"]


def test_hydra_discovers_the_plugin_and_its_config() -> None:
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "ParetoSweeper" in names
    # The schema is registered by the plugin; the default space is the app's YAML on top.
    assert "pareto_schema.yaml" in ConfigStore.instance().repo["hydra"]["sweeper"]
    assert "pareto_schema" in (CONF_DIR / "hydra" / "sweeper" / "pareto.yaml").read_text()


# --- real studies through the CLI ------------------------------------------------------

SEARCH = [
    "-m", "hydra/sweeper=pareto", "hydra.sweeper.seed=0",
    "model=mlp,cnn", "batch=32,64,128", "precision=fp32", *TINY,
]


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _study(db: Path, name: str | None = None) -> optuna.Study:
    storage = f"sqlite:///{db}"
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name or names[0], storage=storage)


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real six-trial study, shared by the assertions below."""
    work = tmp_path_factory.mktemp("search")
    proc = run_cli([*SEARCH, "hydra.sweeper.n_trials=6"], cwd=work)
    return work, proc


@pytest.mark.slow
def test_search_records_a_front_with_every_trial_linked_to_its_run(
    search: tuple[Path, subprocess.CompletedProcess],
) -> None:
    work, proc = search
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = work / "results" / "sweeper.db"
    study = _study(db)
    trials = study.get_trials()
    assert len(trials) == 6
    assert study.metric_names == ["val_accuracy", "energy_train_j"]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert study.best_trials
    runs = {r[0]: r[1:] for r in _rows(
        db, "select id, trial_number, status, val_accuracy, energy_train_j, meter_source, "
        "energy_train_uncertainty_j from runs"
    )}
    for t in trials:
        trial_number, status, acc, e_tr, meter, e_tr_unc = runs[t.user_attrs["run_id"]]
        assert status == "completed"
        assert t.values == [acc, e_tr]
        assert t.user_attrs["meter_source"] == meter
        assert t.user_attrs["energy_train_uncertainty_j"] == e_tr_unc and e_tr_unc > 0
        if not t.user_attrs["reused_run"]:
            assert trial_number == t.number
    assert _rows(db, "select kind, study_name from sweeps") == [("search", study.study_name)]
    assert "Pareto front" in proc.stdout
    # Each trial measured its inference benchmark exactly when the trials before it left it
    # undominated even at its fewest plausible joules (hydra.sweeper.inference=front, the
    # default).
    for t in trials:
        if t.user_attrs["reused_run"]:
            continue
        before = pareto_front([tuple(u.values) for u in trials[:t.number]])
        run_id = t.user_attrs["run_id"]
        phases = [k for (k,) in _rows(db, f"select kind from phases where run_id = {run_id}")]
        (e_in,), = _rows(db, f"select energy_inference_j from runs where id = {run_id}")
        unc_j = t.user_attrs["energy_train_uncertainty_j"]  # judged at E_tr - its +-
        dominated = dominating_point(before, *t.values, unc_j) is not None
        assert ("inference" in phases) is not dominated and (e_in is None) is dominated


@pytest.mark.slow
def test_running_the_search_again_resumes_the_study(
    search: tuple[Path, subprocess.CompletedProcess],
) -> None:
    work, _ = search
    db = work / "results" / "sweeper.db"
    proc = run_cli([*SEARCH, "hydra.sweeper.n_trials=2"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert optuna.get_all_study_names(f"sqlite:///{db}") == [_study(db).study_name]
    assert len(_study(db).trials) == 8
    assert _rows(db, "select count(*) from sweeps") == [(1,)]


@pytest.mark.slow
def test_dashboard_backend_lists_the_study(
    search: tuple[Path, subprocess.CompletedProcess],
) -> None:
    from optuna_dashboard import wsgi

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    work, _ = search
    db = work / "results" / "sweeper.db"
    server = make_server("127.0.0.1", 0, wsgi(f"sqlite:///{db}"), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/api/studies"
        with urllib.request.urlopen(base, timeout=30) as response:
            studies = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in studies] == [_study(db).study_name]
        assert studies[0]["directions"] == ["maximize", "minimize"]
        with urllib.request.urlopen(f"{base}/{studies[0]['study_id']}", timeout=30) as response:
            detail = json.load(response)
        assert len(detail["trials"]) >= 6 and detail["best_trials"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.slow
def test_front_command_prints_the_table(search: tuple[Path, subprocess.CompletedProcess]) -> None:
    work, _ = search
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.front", "--storage", "sqlite:///results/sweeper.db"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Pareto front" in proc.stdout and "val acc" in proc.stdout


@pytest.mark.slow
def test_diverged_trials_fail_and_the_study_goes_on(tmp_path: Path) -> None:
    # The random sampler with seed 0 draws 1e8, 0.01, 1e8: fail, complete, fail.
    proc = run_cli([
        "-m", "hydra/sweeper=pareto", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=diverge", "model=mlp",
        "batch=32", "precision=fp32", "optimizer=sgd", "lr=choice(0.01,1e8)", *TINY,
    ], cwd=tmp_path)
    # Unlike a grid, failed trials are part of a search: the command succeeds.
    assert proc.returncode == 0 and "search stopped" in proc.stdout, proc.stderr[-3000:]
    assert "failed" in proc.stdout  # the table lists them
    study = _study(tmp_path / "results" / "sweeper.db", "diverge")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL]
    assert "DivergedError" in study.trials[0].user_attrs["error"]


@pytest.mark.slow
def test_energy_budget_stops_a_trial_early_and_ends_the_study(tmp_path: Path) -> None:
    proc = run_cli([
        "-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=3",
        # Far below anything a run can forecast: the estimate meter's memory term alone
        # (0.375 W/GiB of RSS over the profile's wall time) exceeds it, whereas its CPU term
        # can read 0 J over a few steps (CPU time ticks are 10 ms).
        "hydra.sweeper.energy_budget_j=0.0001", "model=mlp", "batch=32", "precision=fp32", *TINY,
    ], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = tmp_path / "results" / "sweeper.db"
    study = _study(db)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert study.user_attrs["stop_reason"].startswith("energy budget reached")
    ((status, reason, spent_j),) = _rows(db, "select status, stop_reason, energy_total_j from runs")
    assert status == "pruned" and "remaining study budget" in reason
    assert trial.user_attrs["energy_spent_j"] == pytest.approx(spent_j) and spent_j > 0


@pytest.mark.slow
def test_trial_of_a_search_killed_outright_is_failed_when_the_search_resumes(
    tmp_path: Path,
) -> None:
    """Optuna's heartbeat does not cover ask-and-tell: a SIGKILLed search leaves its trial
    RUNNING, and the resumed search fails it (and the run) with the reason."""
    named = ["-m", "hydra/sweeper=pareto", "sweeper.name=killed-search", "hydra.sweeper.seed=0"]
    pid = kill_mid_training([*named, "hydra.sweeper.n_trials=1", *LONG_RUN], tmp_path)
    db = tmp_path / "results" / "sweeper.db"
    (stale,) = _study(db).get_trials()
    assert stale.state == TrialState.RUNNING
    assert stale.user_attrs["search_pid"] == pid

    again = run_cli([*named, "hydra.sweeper.n_trials=1", "model=mlp", *TINY], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    first, second = _study(db).get_trials()
    assert (first.state, second.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert f"(pid {pid} on " in first.user_attrs["error"]
    assert _rows(db, "select trial_number, status, error_type from runs order by id") == [
        (0, "interrupted", "RunVanished"), (1, "completed", None),
    ]


def test_a_running_trial_is_orphaned_only_when_nobody_can_tell_it() -> None:
    from datetime import datetime, timedelta, timezone

    from sweeper.search.orphans import TELL_GRACE_S, why_orphaned

    def running_trial(host: str, pid: int) -> optuna.trial.FrozenTrial:
        return create_trial(
            state=TrialState.RUNNING, user_attrs={"search_host": host, "search_pid": pid}
        )

    here, now = "this-host", datetime.now(timezone.utc)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = Run(id=1, status="running")
    long_ended = Run(id=2, status="interrupted",
                     ended_at=now - timedelta(seconds=TELL_GRACE_S + 1))
    just_ended = Run(id=3, status="completed", ended_at=now - timedelta(seconds=1))
    elsewhere = running_trial("other-host", dead.pid)
    assert why_orphaned(elsewhere, here, [], now) is None  # may still be preparing its run
    assert why_orphaned(elsewhere, here, [live], now) is None
    assert why_orphaned(elsewhere, here, [long_ended, live], now) is None
    assert why_orphaned(elsewhere, here, [just_ended], now) is None  # its search may tell it
    assert "its run 2 ended (interrupted)" in str(why_orphaned(elsewhere, here, [long_ended], now))
    assert why_orphaned(running_trial(here, os.getpid()), here, [], now) is None
    assert f"(pid {dead.pid} on {here}) is gone" in str(
        why_orphaned(running_trial(here, dead.pid), here, [just_ended], now)
    )


def test_a_trial_failed_by_another_worker_is_not_told_twice() -> None:
    from sweeper.search.loop import tell_outcome
    from sweeper.search.study import Outcome

    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    study.tell(trial.number, state=TrialState.FAIL)  # judged orphaned by another worker
    done = Outcome(TrialState.COMPLETE, (0.9, 10.0), {"run_id": 7})
    assert tell_outcome(study, trial, done) is False
    (frozen,) = study.get_trials()
    assert frozen.state == TrialState.FAIL and "run_id" not in frozen.user_attrs

    fresh = study.ask()
    assert tell_outcome(study, fresh, done) is True
    assert study.get_trials()[1].values == [0.9, 10.0]


def test_a_trial_left_to_a_live_twin_waits_for_its_values(sqlite_url: str) -> None:
    """Two processes of one search drew the same config: the job that found its twin
    running is skipped, and its trial takes the twin's values once it ends instead of
    failing (the twin's joules count once, for the twin's own trial)."""
    import os
    import socket
    import time

    from hydra.core.utils import JobReturn, JobStatus

    from sweeper.run.result import JobResult
    from sweeper.search.loop import outcome_of_job
    from sweeper.store import Store
    from sweeper.store import runs as store_runs
    from tests.conftest import run_row

    store = Store(sqlite_url)
    sweep_id = store_runs.ensure_sweep(store, "search: twins")
    twin = store_runs.insert_run(store, run_row(
        sweep_id, status="running", pid=os.getpid(), host=socket.gethostname()))
    ret = JobReturn(status=JobStatus.COMPLETED,
                    _return_value=JobResult(status="skipped", run_id=twin, sweep_id=sweep_id))

    def twin_finishes() -> None:
        time.sleep(1.0)
        store_runs.update_run(store, twin, status="completed", val_accuracy=0.9,
                              energy_train_j=40.0, energy_total_j=50.0)

    finisher = threading.Thread(target=twin_finishes)
    t0 = time.monotonic()
    finisher.start()
    outcome = outcome_of_job(ret, store, "energy_train_j")
    finisher.join()
    assert time.monotonic() - t0 >= 0.9
    assert outcome.state == TrialState.COMPLETE and outcome.values == (0.9, 40.0)
    assert outcome.attrs["reused_run"] is True and outcome.attrs["energy_spent_j"] == 0.0
    # A twin whose process is gone is not waited for: the trial fails with its status.
    gone = store_runs.insert_run(store, run_row(
        sweep_id, status="running", pid=2**22 + 12345, host=socket.gethostname()))
    ret = JobReturn(status=JobStatus.COMPLETED,
                    _return_value=JobResult(status="skipped", run_id=gone, sweep_id=sweep_id))
    assert outcome_of_job(ret, store, "energy_train_j").state == TrialState.FAIL
    store.dispose()


def test_the_studys_database_falls_back_to_the_runs_store_in_one_place() -> None:
    """hydra.sweeper.storage, else storage.url: what both the callback that prepares the
    study's tables and the search loop open."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from sweeper.config.storage import study_url

    def composed(*overrides: str):  # noqa: ANN202
        GlobalHydra.instance().clear()
        with initialize_config_module("sweeper.conf", version_base="1.3"):
            cfg = compose("config", overrides=["hydra/sweeper=pareto", *overrides],
                          return_hydra_config=True)
        GlobalHydra.instance().clear()
        return cfg

    assert study_url(composed("storage.url=sqlite:///runs.db")) == "sqlite:///runs.db"
    own = composed("storage.url=sqlite:///runs.db", "hydra.sweeper.storage=sqlite:///study.db")
    assert study_url(own) == "sqlite:///study.db"
    with pytest.raises(ConfigError, match="'hydra.sweeper.storage'"):
        study_url(composed("hydra.sweeper.storage=nowhere"))
