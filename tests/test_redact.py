"""A password typed into storage.url reaches no file, table or output line of a multirun: the
grid, the search and the submitit launcher, in every form Hydra writes it (issue 14, item 11);
nor of a single run, a failing job, a refused grid or a submitit sweep stopped by SIGTERM, and
every file written is owner-only (issue 21, items 1-5).

The test server trusts local connections, so any password is accepted; the schema of the
pg_url fixture is chosen with PGOPTIONS so the URL on the command line is the plain form a
user types (`postgresql+psycopg://postgres:PW@host:5432/test`), which Hydra escapes to
`postgresql+psycopg\\://postgres\\:PW@host\\:5432/test` in each job's overrides.
"""

from __future__ import annotations

import pickle
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from sweeper.redact import mask_secrets, scrub_sweep_dir, secrets_in, take_passwords
from tests.conftest import LONG_RUN, TINY, cli_env, run_cli

SECRET = "S3cretPW-x9"


@pytest.mark.parametrize("text", [
    f"storage.url=postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/test",
    # Hydra's escaped sweep override, as in the launch lines and overrides.yaml
    f"storage.url=postgresql+psycopg\\://postgres\\:{SECRET}@127.0.0.1\\:5432/test",
    # the same inside a double-quoted YAML or JSON string
    f'"storage.url=postgresql+psycopg\\\\://postgres\\\\:{SECRET}@127.0.0.1\\\\:5432/test"',
    f"override_dirname: batch=32,storage.url=postgresql\\://u\\:{SECRET}@h\\:5432/db,x=1",
    f"postgresql://u@h/db?sslmode=require&password\\={SECRET}",
    f"PGPASSWORD={SECRET} SWEEPER_DB_PASSWORD={SECRET} python -m sweeper",
])
def test_every_written_form_of_a_password_is_masked(text: str) -> None:
    masked = mask_secrets(text)
    assert SECRET not in masked and "***" in masked
    assert secrets_in([text]) >= {SECRET}


def test_urls_without_a_password_are_left_alone() -> None:
    for text in ("sqlite:///results/sweeper.db", "postgresql+psycopg://postgres@127.0.0.1/test",
                 "postgresql://db.example/sweeps", "a time 12:30 and mail me@host"):
        assert mask_secrets(text) == text
    assert secrets_in(["sqlite:///results/sweeper.db batch=32"]) == set()


def test_passwords_are_taken_out_of_the_command_line() -> None:
    args = [
        "-m", "batch=32,64",
        f"storage.url=postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/test",
        f'hydra.sweeper.storage="postgresql://u:{SECRET}@h/db?sslmode=require"',
        "storage.url=postgresql://u@h/db?sslmode=require&password=p%40ss",
        "storage.url=sqlite:///results/sweeper.db",
    ]
    cleaned, found = take_passwords(args)
    assert found == {SECRET, "p@ss"}  # percent-decoded, as the server reads it
    assert cleaned == [
        "-m", "batch=32,64",
        "storage.url=postgresql+psycopg://postgres@127.0.0.1:5432/test",
        'hydra.sweeper.storage="postgresql://u@h/db?sslmode=require"',
        "storage.url=postgresql://u@h/db?sslmode=require&",
        "storage.url=sqlite:///results/sweeper.db",
    ]
    assert make_url(cleaned[4].split("=", 1)[1]).query == {"sslmode": "require"}


def test_scrub_sweep_dir_masks_yaml_logs_and_keeps_pickles_loadable(tmp_path: Path) -> None:
    job = tmp_path / "0" / ".hydra"
    job.mkdir(parents=True)
    escaped = f"storage.url=postgresql+psycopg\\://postgres\\:{SECRET}@127.0.0.1\\:5432/test"
    (job / "overrides.yaml").write_text(f"- batch=32\n- {escaped}\n")
    (tmp_path / "multirun.yaml").write_text(f"task:\n- {escaped}\n")
    jobs = tmp_path / ".submitit" / "123"
    jobs.mkdir(parents=True)
    (jobs / "123_0_log.err").write_text(f"could not log in with {SECRET}\n")
    payload = {"overrides": [escaped, "batch=32"], "note": f"pw {SECRET} end"}
    (jobs / "123_submitted.pkl").write_bytes(pickle.dumps(payload))
    weights = tmp_path / "0" / "model.pt"
    weights.write_bytes(b"\x00" * 10)

    command = ["batch=32,64", escaped.replace("\\", "")]
    changed = scrub_sweep_dir(tmp_path, command)

    assert {p.name for p in changed} == {"overrides.yaml", "multirun.yaml", "123_0_log.err",
                                         "123_submitted.pkl"}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "postgres\\:***@127.0.0.1" in (job / "overrides.yaml").read_text()
    loaded = pickle.loads((jobs / "123_submitted.pkl").read_bytes())
    assert loaded["note"] == f"pw {'*' * len(SECRET)} end"
    assert loaded["overrides"][1] == "batch=32"


# ----------------------------------------------------------------- real multiruns (PostgreSQL)


def _url_with_password(pg_url: str) -> tuple[str, str]:
    """The fixture's server as a user would type it (with a password, without the query),
    and the PGOPTIONS that select the fixture's schema."""
    schema = re.search(r"search_path%3D(\w+)", pg_url)
    assert schema is not None
    url = make_url(pg_url).set(password=SECRET, query={})
    return url.render_as_string(hide_password=False), f"-csearch_path={schema[1]}"


def _every_row_as_text(pg_url: str) -> dict[str, list[str]]:
    """Every row of every table in the fixture's schema (sweeper's and Optuna's), as text."""
    engine = sqlalchemy.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            schema = conn.execute(sqlalchemy.text("select current_schema()")).scalar_one()
            tables = conn.execute(sqlalchemy.text(
                "select table_name from information_schema.tables where table_schema = :s"
            ), {"s": schema}).scalars().all()
            return {t: [str(r[0]) for r in conn.execute(
                sqlalchemy.text(f'select t::text from "{schema}"."{t}" t'))] for t in tables}
    finally:
        engine.dispose()


def _assert_owner_only(tmp_path: Path) -> None:
    """Every file and folder the command wrote is readable by its owner only."""
    for path in (p for p in tmp_path.rglob("*") if not p.is_symlink()):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:o}"


def _assert_nowhere(
    tmp_path: Path, pg_url: str, output: str, runs: bool = True
) -> dict[str, list[str]]:
    assert SECRET not in output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not runs or any(p.name == "overrides.yaml" for p in written)
    for path in written:  # results, .hydra/*, logs, multirun.yaml, launcher files
        assert SECRET.encode() not in path.read_bytes(), path
    _assert_owner_only(tmp_path)
    tables = _every_row_as_text(pg_url)
    assert not runs or tables["runs"], "no run was recorded"
    for table, rows in tables.items():
        for row in rows:
            assert SECRET not in row, (table, row[:300])
    return tables


def _multirun(tmp_path: Path, pg_url: str, *args: str) -> str:
    url, options = _url_with_password(pg_url)
    args = tuple(a.replace("URL", url) for a in args)
    proc = run_cli(["-m", "model=mlp", "batch=32,64", *TINY, *args, f"storage.url={url}"],
                   cwd=tmp_path, timeout=240, env={"PGOPTIONS": options})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.mark.postgres
@pytest.mark.slow
def test_a_grid_multirun_leaves_the_password_nowhere(tmp_path: Path, pg_url: str) -> None:
    output = _multirun(tmp_path, pg_url)
    assert "#1 : " in output  # Hydra's launch lines were printed, without the password
    assert "postgres@127.0.0.1" in output
    tables = _assert_nowhere(tmp_path, pg_url, output)
    assert len(tables["runs"]) == 2
    assert all("postgres@127.0.0.1" in row for row in tables["runs"])  # runs.overrides


@pytest.mark.postgres
@pytest.mark.slow
def test_a_search_leaves_the_password_nowhere(tmp_path: Path, pg_url: str) -> None:
    output = _multirun(tmp_path, pg_url, "hydra/sweeper=pareto", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.storage=URL")  # the study's own storage, too
    tables = _assert_nowhere(tmp_path, pg_url, output)
    assert len(tables["runs"]) == 2 and len(tables["trials"]) == 2


@pytest.mark.postgres
@pytest.mark.slow
def test_a_submitit_sweep_leaves_the_password_nowhere(tmp_path: Path, pg_url: str) -> None:
    """submitit's local executor writes what its Slurm executor writes: pickled jobs and
    results, and each job's stdout/stderr, under the sweep's .submitit folder."""
    output = _multirun(tmp_path, pg_url, "hydra/launcher=submitit_local",
                       "hydra.launcher.timeout_min=5")
    assert list(tmp_path.rglob(".submitit/*/*_submitted.pkl"))
    _assert_nowhere(tmp_path, pg_url, output)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_search_on_submitit_leaves_the_password_nowhere(tmp_path: Path, pg_url: str) -> None:
    """The password in the search's own storage key too (issue 21, item 1): main scrubbed
    only storage.url's from the pickles."""
    url, options = _url_with_password(pg_url)
    proc = run_cli(["-m", "model=mlp", "batch=32,64", *TINY, "hydra/sweeper=pareto",
                    "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={url}",
                    "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                    f"storage.url={url.replace(f':{SECRET}@', '@')}"],  # no password
                   cwd=tmp_path, timeout=240, env={"PGOPTIONS": options})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert list(tmp_path.rglob(".submitit/*/*_submitted.pkl"))
    assert list(tmp_path.rglob(".submitit/*/*_result.pkl"))
    tables = _assert_nowhere(tmp_path, pg_url, output)
    assert len(tables["runs"]) == 2


def _run(tmp_path: Path, pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    url, options = _url_with_password(pg_url)
    return run_cli([*args, *TINY, f"storage.url={url}"], cwd=tmp_path, timeout=240,
                   env={"PGOPTIONS": options})


@pytest.mark.postgres
@pytest.mark.slow
def test_a_single_run_leaves_the_password_nowhere(tmp_path: Path, pg_url: str) -> None:
    proc = _run(tmp_path, pg_url, "model=mlp")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    tables = _assert_nowhere(tmp_path, pg_url, output)
    assert [row.count("completed") > 0 for row in tables["runs"]] == [True]
    assert "password was typed on the command line" in proc.stderr  # and said so


@pytest.mark.postgres
def test_a_refused_grid_names_its_job_without_the_password(tmp_path: Path, pg_url: str) -> None:
    proc = _run(tmp_path, pg_url, "-m", "model=mlp", "batch=32,0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "invalid value for 'batch'" in proc.stderr and "(in the sweep: " in proc.stderr
    assert "postgres@127.0.0.1" in proc.stderr
    _assert_nowhere(tmp_path, pg_url, proc.stdout + proc.stderr, runs=False)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_job_failing_unexpectedly_prints_hydras_error_line_without_the_password(
    tmp_path: Path, pg_url: str
) -> None:
    """A fault no check foresees (here the database refuses every new run row) ends the job
    with Hydra's own `Error executing job with overrides: [...]` line and a traceback."""
    from sweeper.store import open_store

    open_store(pg_url)  # the schema, then a trigger that makes every insert into runs fail
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(
            "create function refuse() returns trigger as $$ begin "
            "raise exception 'injected fault'; end $$ language plpgsql"))
        conn.execute(sqlalchemy.text(
            "create trigger refuse before insert on runs execute function refuse()"))
    engine.dispose()
    proc = _run(tmp_path, pg_url, "-m", "model=mlp", "batch=32")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Error executing job with overrides: [" in proc.stderr
    assert "injected fault" in proc.stderr
    _assert_nowhere(tmp_path, pg_url, output, runs=False)


def _wait_until_training(pg_url: str, proc: subprocess.Popen, runs: int) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                with engine.connect() as conn:
                    running = conn.execute(sqlalchemy.text(
                        "select count(*) from runs where status = 'running' and exists "
                        "(select 1 from phases where phases.run_id = runs.id)")).scalar_one()
                if running == runs:
                    return
            except sqlalchemy.exc.ProgrammingError:
                pass  # the tables are being created
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise AssertionError("the jobs never started training")


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_mid_submitit_sweep_stops_its_jobs_and_leaves_the_password_nowhere(
    tmp_path: Path, pg_url: str
) -> None:
    url, options = _url_with_password(pg_url)
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
            *LONG_RUN, "batch=32,64", "energy.idle.seconds=0", f"storage.url={url}"]
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=tmp_path,
                            env=cli_env(PGOPTIONS=options), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_training(pg_url, proc, runs=2)
        jobs = psutil.Process(proc.pid).children(recursive=True)
        # The jobs get the password through their environment, not their files.
        environ = [p.environ().get("SWEEPER_DB_PASSWORD") for p in jobs]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(jobs, timeout=5)
    try:
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for job in alive:
            job.kill()
    assert list(tmp_path.rglob(".submitit/*/*_submitted.pkl"))
    tables = _assert_nowhere(tmp_path, pg_url, out + err)
    assert [("interrupted" in row) for row in tables["runs"]] == [True, True]
    assert proc.returncode == 143, err[-3000:]
    assert SECRET in environ


@pytest.mark.slow
def test_a_run_on_sqlite_writes_owner_only_files_whatever_the_umask(tmp_path: Path) -> None:
    """The SQLite file (its -wal/-journal take its mode), the log and .hydra/ (item 5)."""
    proc = subprocess.run(
        ["sh", "-c", 'umask 002 && exec "$0" -m sweeper "$@"', sys.executable, "model=mlp",
         *TINY], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "sweeper.db").is_file()
    assert list(tmp_path.rglob("sweeper.log")) and list(tmp_path.rglob("config.yaml"))
    _assert_owner_only(tmp_path)
