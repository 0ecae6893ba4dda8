"""`GridSweeper`: Hydra's basic sweeper (same settings: max_batch_size, params) without its
second check of the grid. Before each batch, the basic sweeper composes every job's config
again to check it; sweeper's callback has already checked every job of the grid, in one
pass (sweeper.app.grid_check), so that second pass over thousands of jobs is skipped."""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class GridSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from sweeper.app.grid_check import CHECKED

        if not CHECKED:  # no callback checked this grid (hydra.callbacks changed): Hydra's
            super().validate_batch_is_legal(batch)
