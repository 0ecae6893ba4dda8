"""Where this process sits in a torchrun launch, read from the environment alone.

Validation needs it (a DDP run is a different measurement), so it lives here without torch;
sweeper.training.distributed does the torch side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a torchrun launch (world_size 1 without torchrun)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launch() -> Launch:
    world = _env_int("WORLD_SIZE", 1)
    return Launch(
        world_size=world,
        rank=_env_int("RANK", 0),
        local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
    )


def is_main() -> bool:
    return launch().is_main


def identity() -> dict[str, Any]:
    """Extra config keys that make a DDP run a different measurement than a
    single-device one (empty without torchrun, so existing config hashes stay)."""
    info = launch()
    return {"world_size": info.world_size} if info.active else {}
