"""Training order and augmentation that depend only on (seed, epoch): what makes a resumed run identical.

A DataLoader's shuffling and augmentation normally draw from torch's global generator, whose state at the
start of an epoch depends on the process's history (and a Lightning checkpoint does not hold it). Here the
sampler draws the epoch's permutation and one seed per sample from a generator seeded with (seed, epoch), and
each sample is loaded under its own seed, so epoch k yields the same batches whether the process started at
epoch 0 or resumed at epoch k, and whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

_SEED_RANGE = 2**62


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Yields (index, sample seed) pairs in an order fixed by (seed, epoch); Lightning calls set_epoch."""

    def __init__(self, size: int, seed: int, epoch: int = 0) -> None:
        self.size = size
        self.seed = seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(_SEED_RANGE, (self.size,), generator=generator).tolist()
        return iter(zip(order, seeds, strict=True))


class SeededSamples(Dataset):
    """Loads `dataset[index]` with torch's generator seeded by the sample's own seed (and restored after)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
