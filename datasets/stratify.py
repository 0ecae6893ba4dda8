"""Seeded, stratified index splitting shared by every source."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def stratified_order(labels: Tensor, rng: np.random.Generator) -> Tensor:
    """A random permutation of ``range(len(labels))`` whose every prefix is stratified.

    A sample's key is its shuffled rank within its class, centred and divided by
    the class size; sorting by it (random tie-breaks) interleaves the classes in
    proportion, so the first k indices hold about ``k * class_share`` of each class.
    """
    y = labels.cpu().numpy()
    keys = np.empty(len(y), dtype=np.float64)
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        keys[members] = (rng.permutation(len(members)) + 0.5) / len(members)
    return torch.from_numpy(np.lexsort((rng.random(len(y)), keys)))


def split_off(labels: Tensor, fraction: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Stratified split into sorted (rest, held_out) indices, ``round(fraction * n)`` held out."""
    order = stratified_order(labels, rng)
    held = round(fraction * len(order))
    return order[held:].sort().values, order[:held].sort().values


def take(labels: Tensor, count: int, rng: np.random.Generator) -> Tensor:
    """Sorted indices of a stratified subsample of ``count`` (all if fewer exist)."""
    return stratified_order(labels, rng)[:count].sort().values
