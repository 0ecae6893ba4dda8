"""mode=layers' catalog: stored layer timings of one machine, and reading them back."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select

from sweeper.store.db import Store
from sweeper.store.schema import LayerCost


def replace_layer_costs(store: Store, hardware_id: str, precision: str, batch: int,
                        rows: Iterable[LayerCost]) -> int:
    """Store a new catalog of one machine, precision and batch size in place of the old one
    (a machine measured again is measured as it is now); returns the rows written."""
    rows = list(rows)
    with store.session() as session:
        session.execute(delete(LayerCost).where(
            LayerCost.hardware_id == hardware_id, LayerCost.precision == precision,
            LayerCost.batch == batch))
        session.add_all(rows)
    return len(rows)


def load_layer_costs(store: Store, hardware_id: str, precision: str = "fp32") -> list[LayerCost]:
    with store.session() as session:
        return list(session.scalars(
            select(LayerCost).where(LayerCost.hardware_id == hardware_id,
                                    LayerCost.precision == precision).order_by(LayerCost.id)))
