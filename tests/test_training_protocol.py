"""The study's training protocol: the lr schedule stepped per epoch in real training, and
DataLoader workers / pinned memory chosen per device."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hydra import compose
from torch.utils.data import Dataset

from sweeper.config.spec import build_spec
from sweeper.datasets import load_dataset
from sweeper.errors import ConfigError
from sweeper.models import build_model
from sweeper.training.loaders import LoaderOptions, LoaderSettings, make_loader, resolve_loader
from sweeper.training.schedule import ScheduleSpec, make_scheduler
from sweeper.training.trainer import Trainer, make_optimizer

LR = 0.1


def _train(schedule: ScheduleSpec, epochs: int, settings: LoaderSettings | None = None) -> list:
    torch.manual_seed(0)
    data = load_dataset("synthetic", n_samples=120, image_size=8, channels=1, seed=0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    optimizer = make_optimizer("sgd", model.parameters(), LR, 0.9, 5e-4)
    trainer = Trainer(model, optimizer, torch.device("cpu"), "fp32",
                      make_scheduler(schedule, optimizer))
    loader = make_loader(data.train, 32, shuffle=True, seed=0, settings=settings)
    return [trainer.train_epoch(loader) for _ in range(epochs)]


def test_cosine_anneals_the_lr_once_per_epoch_over_the_run() -> None:
    epochs = 4
    stats = _train(ScheduleSpec("cosine", epochs=epochs), epochs)
    expected = [LR * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert [s.lr for s in stats] == pytest.approx(expected, rel=1e-9)
    assert all(s.steps == 3 for s in stats)  # the lr moves per epoch, not per step
    assert stats[0].loss > stats[-1].loss  # it trained


def test_step_and_none_schedules() -> None:
    stats = _train(ScheduleSpec("step", epochs=5, step_epochs=2, gamma=0.5), 5)
    assert [s.lr for s in stats] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert [s.lr for s in _train(ScheduleSpec("none", epochs=3), 3)] == [LR] * 3


def test_schedule_and_loader_keys_are_validated(hydra_conf: None) -> None:
    spec = build_spec(compose("config", overrides=["model=mlp"]))
    assert (spec.scheduler, spec.loader.workers, spec.loader.pin_memory) == ("none", None, None)
    spec = build_spec(compose("config", overrides=[
        "model=mlp", "scheduler=step", "lr_step.epochs=3", "lr_step.gamma=0.5",
        "loader.workers=4", "loader.pin_memory=false"]))
    assert (spec.scheduler, spec.lr_step.epochs, spec.lr_step.gamma) == ("step", 3, 0.5)
    assert (spec.loader.workers, spec.loader.pin_memory) == (4, False)
    for override, key in [("scheduler=linear", "'scheduler'"), ("loader.workers=-1",
                          "'loader.workers'"), ("loader.workers=many", "'loader.workers'"),
                          ("loader.pin_memory=yes", "'loader.pin_memory'"),
                          ("lr_step.epochs=0", "'lr_step.epochs'")]:
        with pytest.raises(ConfigError, match=key):
            build_spec(compose("config", overrides=["model=mlp", override]))


def test_auto_loader_settings_per_device() -> None:
    cpu = resolve_loader(LoaderOptions(), torch.device("cpu"), cpus=16, local_processes=1)
    assert cpu == LoaderSettings(workers=0, pin_memory=False) and not cpu.persistent
    cuda = resolve_loader(LoaderOptions(), torch.device("cuda"), cpus=16, local_processes=1)
    assert cuda == LoaderSettings(workers=8, pin_memory=True) and cuda.persistent
    # Four ranks on a 16-core host share the cores; one is left for each training thread.
    shared = resolve_loader(LoaderOptions(), torch.device("cuda"), cpus=16, local_processes=4)
    assert shared.workers == 3
    assert resolve_loader(LoaderOptions(), torch.device("cuda"), cpus=1).workers == 0
    explicit = resolve_loader(LoaderOptions(2, True), torch.device("cpu"))
    assert explicit == LoaderSettings(workers=2, pin_memory=False)  # nothing to pin for


class _WhoLoads(Dataset):
    """Each item says which process produced it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(index)]), os.getpid()


def test_workers_persist_across_epochs_and_keep_the_order() -> None:
    data = _WhoLoads()
    plain = make_loader(data, 2, shuffle=True, seed=3)
    loader = make_loader(data, 2, shuffle=True, seed=3, settings=LoaderSettings(workers=2))
    first = list(loader)
    second = list(loader)
    pids = {int(p) for _, pids in first + second for p in pids}
    assert os.getpid() not in pids and len(pids) == 2  # two workers, kept for epoch two
    assert [x.tolist() for x, _ in first] == [x.tolist() for x, _ in plain]


def test_training_with_worker_processes() -> None:
    stats = _train(ScheduleSpec("cosine", epochs=2), 2, LoaderSettings(workers=2))
    assert stats[1].samples == stats[0].samples > 0 and math.isfinite(stats[1].loss)
