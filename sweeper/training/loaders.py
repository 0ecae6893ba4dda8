"""DataLoaders for a run: the training loader (sharded per rank under torchrun) and the
evaluation loaders, seeded so a configuration sees the same batches every time."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from sweeper.config.launch import launch


def make_loader(dataset: Dataset, batch: int, *, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch, shuffle=shuffle, generator=generator)


def train_loader(dataset: Dataset, batch: int, *, seed: int) -> DataLoader:
    """The training loader: each rank gets its own shard, reshuffled every epoch.
    `batch` is per process, so the global batch is batch x world size."""
    info = launch()
    if not info.active:
        return make_loader(dataset, batch, shuffle=True, seed=seed)
    sampler = _EpochSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed
    )
    return DataLoader(dataset, batch_size=batch, sampler=sampler)


class _EpochSampler(DistributedSampler):
    """Advances its epoch on every pass, so no caller has to call set_epoch."""

    def __iter__(self) -> Iterator[int]:
        indices = super().__iter__()  # computed eagerly from the current epoch
        self.set_epoch(self.epoch + 1)
        return indices
