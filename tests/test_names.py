"""A sweep or study name the store cannot hold is refused in one line before any work, with
the same limit on SQLite (which would keep it) and PostgreSQL (which refuses it mid-run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy

from sweeper.store.schema import NAME_LENGTH, Sweep
from tests.conftest import TINY, run_cli, sql_rows


def test_the_limit_is_the_schema_columns() -> None:
    assert Sweep.__table__.c.name.type.length == NAME_LENGTH  # type: ignore[attr-defined]
    assert Sweep.__table__.c.study_name.type.length == NAME_LENGTH  # type: ignore[attr-defined]


def _tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeper.db'}"
    return request.getfixturevalue("pg_url")


@pytest.mark.slow
def test_a_sweep_name_too_long_is_refused_on_every_store(store_url: str, tmp_path: Path) -> None:
    name = "n" * (NAME_LENGTH + 1)
    proc = run_cli(["model=mlp", *TINY, f"sweeper.name={name}", f"storage.url={store_url!r}"],
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "invalid value for 'sweeper.name'" in proc.stderr
    assert f"({NAME_LENGTH + 1} characters)" in proc.stderr
    assert f"allowed: at most {NAME_LENGTH} characters" in proc.stderr
    if "runs" in _tables(store_url):
        assert sql_rows(store_url, "select count(*) from runs") == [(0,)]
    # The longest name allowed is stored whole.
    ok = run_cli(["model=mlp", *TINY, f"sweeper.name={'n' * NAME_LENGTH}",
                  f"storage.url={store_url!r}"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert sql_rows(store_url, "select name from sweeps") == [("n" * NAME_LENGTH,)]


@pytest.mark.slow
def test_a_search_name_too_long_with_its_study_suffix_is_refused(
    store_url: str, tmp_path: Path
) -> None:
    name = "s" * (NAME_LENGTH - 5)  # fits the sweep, not the study "<name> [objective]"
    proc = run_cli(
        ["-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=1", "model=mlp", *TINY,
         f"sweeper.name={name}", f"storage.url={store_url!r}"], cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweeper: error:")]
    assert len(errors) == 1, proc.stderr
    assert "invalid value for 'sweeper.name'" in errors[0]
    assert "the study's name adds" in errors[0] and "for its objective" in errors[0]
    if "runs" in _tables(store_url):
        assert sql_rows(store_url, "select count(*) from runs") == [(0,)]
        assert sql_rows(store_url, "select count(*) from sweeps") == [(0,)]
