"""DataLoaders for a run: the training loader (sharded per rank under torchrun) and the
evaluation loaders, seeded so a configuration sees the same batches every time.

On a GPU a single-process loader starves the card (batches are collated and copied on
the training thread), so `loader.workers=auto` starts worker processes there and
`loader.pin_memory=auto` pins host memory for asynchronous copies; on a CPU both stay off,
where workers would only compete with the training threads for the same cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from sweeper.config.launch import launch

MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class LoaderOptions:
    """`loader.*` as configured: None means auto (decided per device)."""

    workers: int | None = None
    pin_memory: bool | None = None


@dataclass(frozen=True)
class LoaderSettings:
    """What every DataLoader of one run is built with."""

    workers: int = 0
    pin_memory: bool = False

    @property
    def persistent(self) -> bool:
        """Workers live across epochs: restarting them each epoch costs seconds per run."""
        return self.workers > 0


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_loader(
    options: LoaderOptions,
    device: torch.device,
    *,
    cpus: int | None = None,
    local_processes: int | None = None,
) -> LoaderSettings:
    """Concrete settings for `device`: auto workers on CUDA share the usable cores among
    the processes of this host (one is left for the training thread), up to 8 each."""
    cuda = device.type == "cuda"
    workers = options.workers
    if workers is None:
        if not cuda:
            workers = 0
        else:
            per_process = (cpus or usable_cpus()) // max(
                1, local_processes or launch().local_world_size
            )
            workers = max(0, min(MAX_AUTO_WORKERS, per_process - 1))
    pin = cuda if options.pin_memory is None else bool(options.pin_memory and cuda)
    return LoaderSettings(workers=workers, pin_memory=pin)


def make_loader(
    dataset: Dataset,
    batch: int,
    *,
    shuffle: bool,
    seed: int,
    settings: LoaderSettings | None = None,
    sampler: DistributedSampler | None = None,
) -> DataLoader:
    settings = settings or LoaderSettings()
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        generator=generator,
        num_workers=settings.workers,
        pin_memory=settings.pin_memory,
        persistent_workers=settings.persistent,
    )


def train_loader(
    dataset: Dataset, batch: int, *, seed: int, settings: LoaderSettings | None = None
) -> DataLoader:
    """The training loader: each rank gets its own shard, reshuffled every epoch.
    `batch` is per process, so the global batch is batch x world size."""
    info = launch()
    if not info.active:
        return make_loader(dataset, batch, shuffle=True, seed=seed, settings=settings)
    sampler = _EpochSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed
    )
    return make_loader(dataset, batch, shuffle=False, seed=seed, settings=settings,
                       sampler=sampler)


class _EpochSampler(DistributedSampler):
    """Advances its epoch on every pass, so no caller has to call set_epoch."""

    def __iter__(self) -> Iterator[int]:
        indices = super().__iter__()  # computed eagerly from the current epoch
        self.set_epoch(self.epoch + 1)
        return indices
