"""Full garbage collections stay out of measured steps (sweeper.training.heap)."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

import pytest
from hydra import compose

from sweeper.run.job import run_job
from sweeper.training.heap import frozen_heap
from sweeper.training.trainer import Trainer


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _full_collection_s() -> float:
    t0 = time.perf_counter()
    gc.collect()
    return time.perf_counter() - t0


def test_objects_made_before_are_not_walked_and_garbage_made_inside_is_collected() -> None:
    old = [[i] for i in range(300_000)]  # long-lived objects the collector would walk
    walked_s = min(_full_collection_s() for _ in range(3))
    with frozen_heap():
        assert gc.get_freeze_count() >= len(old)
        frozen_s = min(_full_collection_s() for _ in range(3))
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
        with frozen_heap():  # nested: the outer block still holds the freeze
            pass
        assert gc.get_freeze_count() >= len(old)
    assert gc.get_freeze_count() == 0
    assert frozen_s < 0.5 * walked_s, (frozen_s, walked_s)


def test_a_run_trains_with_the_heap_frozen_and_releases_it(
    hydra_conf: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    train_epoch = Trainer.train_epoch

    def spy(self: Trainer, *args: object, **kwargs: object) -> object:
        seen.append(gc.get_freeze_count())
        return train_epoch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "train_epoch", spy)
    cfg = compose("config", overrides=[
        "model=mlp", "epochs=2", "batch=128", f"storage.url=sqlite:///{tmp_path / 's.db'}",
        "device=cpu", "meter=estimate", "energy.idle.seconds=0", "sweeper.progress=false",
        "energy.keep_samples=false"])
    result = run_job(cfg)
    assert result.status == "completed", result.error
    assert len(seen) == 2 and min(seen) > 10_000  # torch and the data are frozen
    assert gc.get_freeze_count() == 0
