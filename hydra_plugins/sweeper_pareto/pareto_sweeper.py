"""`ParetoSweeper`: the Hydra plugin class. Hydra scans this module at every start, so
the search itself (Optuna, the store) is imported only when a search runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.sweeper_pareto.config import ParetoSweeperConf  # noqa: F401 - registers


class ParetoSweeper(Sweeper):
    """Ask-and-tell Optuna search over the app's config: val accuracy against energy."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {
            key: OmegaConf.to_container(value, resolve=True)
            if isinstance(value, DictConfig) else value
            for key, value in settings.items()
        }
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Sequence[Any]:
        from sweeper.search.loop import run_search

        return run_search(self, arguments)
