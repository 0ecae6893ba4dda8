"""The package as a user installs it: a wheel built from the tracked files, installed into a
fresh virtual environment, run from another directory (issue 14, item 1)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in ("tests", "benchmarks", "build") or ".venv" in rel.parts:
            continue
        top = mapped.get(rel.parts[0], rel.parts[0])
        found.add(".".join([top, *rel.parts[1:]]))
    found |= {"hydra_plugins", "hydra_plugins.sweeper_pareto"}  # a namespace package
    assert found == listed


def test_the_search_plugin_is_found_from_any_directory(tmp_path: Path) -> None:
    """Hydra finds plugins by scanning the hydra_plugins namespace: the install must put
    sweeper's there, not only make it importable by name. The override is the README's."""
    documented = 'hydra.sweeper.params.lr="tag(log, interval(1e-3, 1e-1))"'
    assert f"`'{documented}'`" in (ROOT / "README.md").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper", "hydra/sweeper=pareto", documented, "--cfg", "hydra"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lr: tag(log, interval(1e-3, 1e-1))" in proc.stdout
    assert "sampler: frontier" in proc.stdout  # the default


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HYDRA_FULL_ERROR"] = "0"
    return env


def _venv_seeing_these_dependencies(venv: Path) -> Path:
    """A fresh virtual environment whose interpreter also finds the packages this one
    installed (torch, Hydra, ...), wherever they live: a venv's or conda env's own
    site-packages, the system's, the user's. `venv --system-site-packages` sees only the base
    interpreter's, which in a venv lacks them. The folders are added by a .pth file as plain
    path entries, so their own .pth files (an editable install of sweeper) are not run and
    the wheel under test is the only sweeper. Returns the venv's python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    found = [p for p in sys.path if p and Path(p).is_dir()
             and Path(p).name in ("site-packages", "dist-packages")]
    (Path(purelib) / "parent_environment.pth").write_text("".join(f"{p}\n" for p in found))
    return python


def test_a_fresh_venv_sees_this_environments_dependencies(tmp_path: Path) -> None:
    """The very packages this interpreter imports, not the base interpreter's (which in a
    plain venv has none, hence main's `No module named 'hydra'`, issue 21 item 13)."""
    import hydra
    import optuna

    python = _venv_seeing_these_dependencies(tmp_path / "venv")
    found = subprocess.run(
        [str(python), "-c", "import hydra, optuna, importlib.util; "
         "print(hydra.__file__, optuna.__file__, importlib.util.find_spec('sweeper'))"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    # ... and not this checkout's editable sweeper: the wheel under test is the only one.
    assert found.stdout.split() == [hydra.__file__, optuna.__file__, "None"]


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_clone(tmp_path: Path) -> None:
    # The tracked files only, as a fresh clone has them.
    source = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(source)],
        check=True, capture_output=True, env=_clean_env(), timeout=300,
    )
    (wheel,) = dist.glob("sweeper-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sweeper/conf/config.yaml" in names
    assert "sweeper/conf/model/resnet.yaml" in names
    assert "sweeper/conf/hydra/sweeper/sampler/nsga2.yaml" in names
    assert "sweeper/conf/energy/meter/auto.yaml" in names  # the meters, energy/meter
    assert "sweeper/models/build.py" in names and "sweeper/datasets/load.py" in names
    assert not [n for n in names if re.match(r"(models|datasets|conf)/", n)]

    venv = tmp_path / "venv"
    python = _venv_seeing_these_dependencies(venv)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, env=_clean_env(), timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import importlib.util, sweeper.models, sweeper.conf; "
         "print(sweeper.models.__file__, importlib.util.find_spec('models'), "
         "importlib.util.find_spec('datasets'))"],
        cwd=elsewhere, env=_clean_env(), capture_output=True, text=True, check=True,
    )
    models_file, top_models, top_datasets = where.stdout.split()
    assert models_file.startswith(str(venv)), where.stdout
    # No top-level `models`/`datasets` that would shadow other distributions.
    assert (top_models, top_datasets) == ("None", "None"), where.stdout

    script = venv / "bin" / "sweeper"
    helped = subprocess.run([str(script), "--help"], cwd=elsewhere, env=_clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "python -m sweeper -m model=resnet,vit" in helped.stdout

    db = elsewhere / "out.db"
    ran = subprocess.run(
        [str(script), "-m", "model=mlp", "batch=32,64", "epochs=1", "inference.batches=2",
         "dataset.max_samples=300", "sweeper.progress=false", f"storage.url=sqlite:///{db}"],
        cwd=elsewhere, env=_clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from runs").fetchall() == [("completed",)] * 2
