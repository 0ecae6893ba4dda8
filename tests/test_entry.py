"""The entry points' own flags: --version names sweeper, --help answers without the heavy
libraries (torch, Optuna, SQLAlchemy), which only a job needs."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from sweeper import __version__
from tests.conftest import cli_env, run_cli


def test_version_names_sweeper_then_its_libraries(tmp_path: Path) -> None:
    proc = run_cli(["--version"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == f"sweeper {__version__}"
    for label, dist in (("torch", "torch"), ("Hydra", "hydra-core"), ("Optuna", "optuna")):
        assert f"{label} {version(dist)}" in second
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_neither_torch_nor_optuna_nor_sqlalchemy(
    tmp_path: Path, flag: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sweeper", flag], cwd=tmp_path,
        env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = set(re.findall(r"\|\s+([\w.]+)$", proc.stderr, flags=re.M))
    assert "hydra" in imported  # the parse worked
    assert not imported & {"torch", "optuna", "sqlalchemy"}, sorted(
        imported & {"torch", "optuna", "sqlalchemy"})
