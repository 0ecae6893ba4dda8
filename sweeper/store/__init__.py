"""Persistence of sweeps, runs, phases and power samples (SQLAlchemy 2.0)."""

from sweeper.errors import StoreError
from sweeper.store.db import Store, mask_url, open_store
from sweeper.store.schema import (
    SCHEMA_VERSION,
    IdleBaseline,
    LayerCost,
    Phase,
    PhaseDomainEnergy,
    PowerSample,
    Run,
    SchemaInfo,
    Sweep,
)

__all__ = [
    "SCHEMA_VERSION",
    "IdleBaseline",
    "LayerCost",
    "Phase",
    "PhaseDomainEnergy",
    "PowerSample",
    "Run",
    "SchemaInfo",
    "Store",
    "StoreError",
    "Sweep",
    "mask_url",
    "open_store",
]
