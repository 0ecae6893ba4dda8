"""Paths a new user takes (issue 14): strict keys, one-line errors with documented exit
codes, reading a database that does not exist, and two processes sharing one sweep."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sweeper.config.keys import check_keys, known_keys
from sweeper.config.spec import build_spec
from sweeper.errors import USER_ERROR_EXIT, ConfigError
from tests.conftest import CONF_DIR, TINY, cli_env, run_cli


def _compose(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+epoch=1", "unknown config key 'epoch'; did you mean 'epochs'?"),
        ("+energy.sample_hzz=5", "unknown config key 'energy.sample_hzz'; did you mean "
         "'energy.sample_hz'?"),
        ("++inference.batchs=3", "did you mean 'inference.batches'?"),
        ("+zzz=1", "unknown config key 'zzz'; see `python -m sweeper --help`"),
    ],
)
def test_unknown_keys_are_refused_with_the_nearest_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace(".", r"\.")):
        build_spec(_compose(override))


def test_every_declared_key_and_preset_passes() -> None:
    assert {"epochs", "energy.sample_hz", "sweeper.energy_limit_reason", "trial"} <= known_keys()
    check_keys(_compose("+experiment=paper", "trial=3", "sweeper.max_energy_train_j=5"))


def test_a_typo_with_plus_trains_nothing_and_exits_2(tmp_path: Path) -> None:
    proc = run_cli(["+epoch=1", *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    assert proc.stderr.strip().splitlines()[-1] == (
        "sweeper: error: unknown config key 'epoch'; did you mean 'epochs'?"
    )
    assert not (tmp_path / "results" / "sweeper.db").exists()


@pytest.mark.parametrize(
    "args", [["nosuch=3"], ["model=nosuch"], ["batch=["]], ids=["key", "group", "syntax"]
)
def test_hydra_usage_errors_exit_2_like_sweepers_own(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli([*args, *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_corrupt_sqlite_file_is_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    garbage = bytes(range(256)) * 20
    db.write_bytes(garbage)
    proc = run_cli([f"storage.url=sqlite:///{db}", *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith(f"sweeper: error: {db} is not a valid sweeper database")
    assert "nothing was changed" in lines[-1]
    assert db.read_bytes() == garbage
    assert not Path(f"{db}-wal").exists()


def test_an_unwritable_sqlite_location_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli([f"storage.url=sqlite:///{blocker}/x.db", *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sweeper: error: cannot create the folder {blocker}")
    assert "server" not in last


@pytest.mark.slow
def test_a_failed_run_logs_its_error_once(tmp_path: Path) -> None:
    proc = run_cli(["lr=1e30", "optimizer=sgd", *TINY], cwd=tmp_path)
    assert proc.returncode == 1
    log = proc.stdout + proc.stderr
    error_lines = [line for line in log.splitlines() if "[ERROR]" in line and "run 1" in line]
    assert len(error_lines) == 1, error_lines


def test_estimate_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none" / "sweeper.db"
    proc = run_cli(["mode=estimate", f"storage.url=sqlite:///{db}"], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    assert f"no database at {db}" in proc.stderr
    assert not db.parent.exists()


@pytest.mark.slow
def test_front_list_on_a_database_without_studies_says_so(tmp_path: Path) -> None:
    run = run_cli(["mode=estimate"], cwd=tmp_path)  # refused: nothing to fit, nothing made
    assert run.returncode == USER_ERROR_EXIT
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.front", "--list", "--storage", f"sqlite:///{db}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0
    assert proc.stderr.strip() == f"no studies in sqlite:///{db}"


@pytest.mark.slow
def test_the_same_grid_started_twice_trains_each_config_once(tmp_path: Path) -> None:
    args = ["-m", "model=mlp", "batch=16,32,64,128", "sweeper.name=shared", *TINY]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sweeper", *args], cwd=tmp_path, env=cli_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    with sqlite3.connect(tmp_path / "results" / "sweeper.db") as conn:
        rows = conn.execute("select batch, status from runs order by id").fetchall()
    assert sorted(b for b, _ in rows) == [16, 32, 64, 128]
    assert {s for _, s in rows} == {"completed"}
    skipped = sum(
        (out + err).count("this sweep is shared with another process") for out, err in outputs
    )
    assert skipped >= 1  # the second process found work taken, rather than repeating it


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("energy.sample_hz=100000", "a finite number > 0 and <= 1000"),
        ("inference.batches=0", "an integer >= 1"),
    ],
)
def test_values_that_measure_nothing_useful_are_refused(override: str, allowed: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"invalid value for '{key}'.*allowed: {allowed}"):
        build_spec(_compose(override))


def test_a_batch_larger_than_the_training_set_is_refused_before_any_row(tmp_path: Path) -> None:
    proc = run_cli(["batch=5000", *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sweeper: error: invalid value for 'batch': 5000; allowed: at most")
    with sqlite3.connect(tmp_path / "results" / "sweeper.db") as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (0,)


def test_the_summary_shows_each_energy_with_its_uncertainty() -> None:
    from sweeper.app.summary import _joules

    assert _joules(122.94, 0.41) == "122.9 ± 0.4 J"
    assert _joules(2500.0, 12.0) == "2.50 ± 0.01 kJ"
    assert _joules(3.0, None) == "3.0 J" and _joules(None, 1.0) == "-"


def test_the_uncertainty_footnote_says_what_the_plus_minus_covers() -> None:
    """With NVML the ± also covers how each refresh was split between phases; with the
    estimate alone, the meter's refresh only."""
    from sweeper.app.summary import _caption
    from sweeper.store import Run

    gpu = Run(meter_source="nvml+estimate", energy_train_uncertainty_j=1.0, machine_busy=False)
    cpu = Run(meter_source="estimate", energy_train_uncertainty_j=1.0, machine_busy=False)
    assert "how NVML's refreshes were split between phases" in _caption([gpu], False)
    assert "split" not in _caption([cpu], False) and "not run-to-run" in _caption([cpu], False)


def test_a_searchs_skipped_inference_benchmarks_are_one_line_not_one_per_run() -> None:
    from sweeper.app.summary import _caption
    from sweeper.run.inference_gate import skip_reason
    from sweeper.store import Run

    skipped = [Run(id=i, status="completed", stop_reason=skip_reason((0.95, 2.0), 0.9, 3.0))
               for i in (3, 4, 8)]
    pruned = Run(id=9, status="pruned", stop_reason="stopped at step 4/40: forecast ...")
    caption = _caption([*skipped, pruned], False)
    assert "E_in not measured: run(s) 3, 4, 8 skipped the inference benchmark" in caption
    assert "run 3 completed" not in caption and "dominated by the search's front" in caption
    assert "run 9 pruned: stopped at step 4/40" in caption  # other reasons stay per run
    assert "E_in not measured" not in _caption([pruned], False)


@pytest.mark.parametrize(
    "args",
    [["+epoch=1"], ["batch=0"], ["nosuch=3"], ["precision=fp16", "device=cpu"],
     ["storage.url=postgresql+psycopg://nobody@127.0.0.1:1/none", "storage.outage_s=0"],
     ["mode=estimate"], ["-m", "batch=32,0"]],
    ids=["typo", "value", "hydra-key", "device", "store", "estimate-no-db", "grid"],
)
def test_a_refused_command_writes_nothing(tmp_path: Path, args: list[str]) -> None:
    """No results/outputs/<time>/ folder (issue 21, item 11): the run is checked before Hydra
    creates it, or what Hydra created is removed when the job refuses."""
    proc = run_cli([*args, *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-2000:]
    assert list(tmp_path.rglob("*")) == []


def test_a_refused_run_keeps_an_existing_run_folder(tmp_path: Path) -> None:
    """hydra.run.dir pointing at a folder that holds files: nothing of it is removed."""
    (tmp_path / "sweeper.log").write_text("an earlier run's log\n")
    proc = run_cli(["batch=0", "hydra.run.dir=.", *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    assert (tmp_path / "sweeper.log").read_text() == "an earlier run's log\n"


@pytest.mark.parametrize("multirun", [False, True])
def test_a_non_ascii_override_says_what_to_quote(tmp_path: Path, multirun: bool) -> None:
    """Hydra reads non-ASCII only inside quotes (issue 21, item 12)."""
    url = f"sqlite:///{tmp_path}/ü/x.db"
    proc = run_cli([*(["-m"] if multirun else []), f"storage.url={url}", *TINY], cwd=tmp_path)
    assert proc.returncode == USER_ERROR_EXIT
    assert proc.stderr.strip().splitlines() == [
        f"sweeper: error: the override 'storage.url={url}' holds non-ASCII characters, which "
        "Hydra reads only inside quotes: quote the value (each value of a list), e.g. "
        f"'storage.url=\"{url}\"' (the outer quotes are for the shell)"
    ]
    assert list(tmp_path.rglob("*")) == []
    quoted = run_cli([f'storage.url="{url}"', "--cfg", "job"], cwd=tmp_path)  # as advised
    assert quoted.returncode == 0 and f"url: {url}" in quoted.stdout, quoted.stderr[-2000:]
