"""A big grid is checked in one pass (each distinct configuration composed once, each new
value of lr, seed and such checked on its own) and announced before its first job when it
is larger than sweeper.confirm_above."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from sweeper.app.callbacks import grid_job_overrides
from sweeper.app.grid_check import check_grid, grid_forecast
from sweeper.errors import ConfigError
from tests.conftest import CONF_DIR, TINY, run_cli, sql_rows
from tests.test_forecast import seed_fits


@pytest.fixture
def grid_config() -> Iterator[Any]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):

        def make(*task: str, storage: str = "sqlite:///results/sweeper.db") -> DictConfig:
            cfg = compose("config", [f"storage.url={storage}"], return_hydra_config=True)
            with open_dict(cfg):
                cfg.hydra.overrides.task = [*task, f"storage.url={storage}"]
            return cfg

        yield make
    GlobalHydra.instance().clear()


def _count_compositions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    loader = GlobalHydra.instance().config_loader()
    calls = [0]
    original = loader.load_sweep_config

    def counted(*args: Any, **kwargs: Any) -> DictConfig:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(loader, "load_sweep_config", counted)
    return calls


def test_a_grid_is_composed_once_per_distinct_configuration(
    grid_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = grid_config("model=mlp,cnn", "batch=32,64", "lr=1e-3,2e-3,5e-3", "seed=range(0,250)")
    calls = _count_compositions(monkeypatch)
    check = check_grid(cfg, grid_job_overrides(cfg))
    assert check.jobs == 2 * 2 * 3 * 250
    assert calls[0] == len(check.representatives) == 4  # model x batch
    assert sorted(r.jobs for r in check.representatives) == [750] * 4


@pytest.mark.parametrize(("task", "message"), [
    (("model=mlp,cnn", "seed=range(0,300)", "lr=1e-3,-1"), "invalid value for 'lr': -1"),
    (("model=mlp", "seed=0,1,-2"), "invalid value for 'seed': -2"),
    (("model=mlp,cnn", "optimizer=adam,rmsprop"), "invalid value for 'optimizer': 'rmsprop'"),
    (("model=mlp,cnn", "seed=0,1", "epochs=1,0"), "invalid value for 'epochs': 0"),
    (("model=mlp,nope", "seed=0,1"), "nope"),
])
def test_a_bad_value_anywhere_in_the_grid_is_refused_naming_its_job(
    grid_config: Any, task: tuple[str, ...], message: str
) -> None:
    cfg = grid_config(*task)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - ConfigError or Hydra's own
        check_grid(cfg, grid_job_overrides(cfg))
    assert message in str(caught.value)
    if isinstance(caught.value, ConfigError):
        assert "(in job: " in str(caught.value)


def test_a_grid_forecast_comes_from_the_fitted_runs_of_the_store(
    grid_config: Any, tmp_path: Path
) -> None:
    db = tmp_path / "e.db"
    seed_fits(db)
    cfg = grid_config("model=mlp,cnn", "seed=range(0,50)", "epochs=1", "device=cpu",
                      storage=f"sqlite:///{db}")
    check = check_grid(cfg, grid_job_overrides(cfg))
    text = grid_forecast(cfg, check)
    assert text.startswith("estimated ") and "(mode=estimate)" in text, text
    assert " J" in text or "kJ" in text or "kWh" in text
    empty = grid_config("model=mlp", "seed=0,1", storage=f"sqlite:///{tmp_path / 'none.db'}")
    assert grid_forecast(empty, check_grid(empty, grid_job_overrides(empty))).startswith(
        "no estimate (no database at")


@pytest.mark.slow
def test_a_grid_above_confirm_above_is_announced_before_its_first_job(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    seed_fits(db)
    proc = run_cli(["-m", "model=mlp", "seed=0,1,2", "device=cpu", *TINY,
                    "sweeper.confirm_above=2", f"storage.url=sqlite:///{db}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "this grid has" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "this grid has 3 jobs (1 distinct configuration apart" in lines[0]
    assert "sweeper.confirm_above=2" in lines[0] and "estimated " in lines[0]
    assert sql_rows(f"sqlite:///{db}", "select count(*) from runs where status = 'completed'"
                    ) == [(8 + 3,)]
    quiet = run_cli(["-m", "model=mlp", "seed=0,1,2", "device=cpu", *TINY,
                     f"storage.url=sqlite:///{db}"], cwd=tmp_path)
    assert quiet.returncode == 0 and "this grid has" not in quiet.stderr


def test_the_grid_sweeper_skips_hydras_second_pass_once_the_grid_is_checked(
    grid_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra.types import HydraContext

    from hydra_plugins.sweeper_grid.grid_sweeper import GridSweeper
    from sweeper.app import grid_check

    cfg = grid_config("model=mlp,cnn", "seed=range(0,100)")
    jobs = grid_job_overrides(cfg)
    sweeper = GridSweeper(max_batch_size=None)
    loader = GlobalHydra.instance().config_loader()
    sweeper.hydra_context = HydraContext(config_loader=loader, callbacks=None)  # type: ignore[arg-type]
    sweeper.config = cfg
    calls = _count_compositions(monkeypatch)
    monkeypatch.setattr(grid_check, "CHECKED", {})
    sweeper.validate_batch_is_legal(jobs[:3])  # no check ran: Hydra's own, per job
    assert calls[0] == 3
    check_grid(cfg, jobs)
    assert calls[0] == 3 + 2
    sweeper.validate_batch_is_legal(jobs)  # checked: not composed again
    assert calls[0] == 5
