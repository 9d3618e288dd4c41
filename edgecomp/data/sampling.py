"""Training order and augmentation that depend only on (seed, epoch): what makes a resumed run identical.

A DataLoader's shuffling and augmentation normally draw from torch's global generator, whose state at the
start of an epoch depends on the process's history (and a Lightning checkpoint does not hold it). Here the
sampler draws the epoch's permutation and one seed per sample from a generator seeded with (seed, epoch), and
each sample is loaded under its own seed, so epoch k yields the same batches whether the process started at
epoch 0 or resumed at epoch k, and whatever the number of workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgecomp.errors import DatasetError

_SEED_RANGE = 2**62


def dataset_length(dataset: Dataset) -> int:
    """`len(dataset)`. torch's `Dataset` declares no `__len__` (it is optional there); what is loaded here needs one."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no __len__: a map-style dataset of known size is needed")
    return len(dataset)


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
        return dataset_length(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def seeded_train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    trainer=None,
    collate_fn=None,
) -> DataLoader:
    """A training DataLoader whose order and per-sample randomness follow (seed, epoch) alone.

    Lightning builds the first epoch's iterator (and worker processes prefetch from it) before it calls the
    sampler's set_epoch, so the sampler must start at the epoch a resumed trainer is at: the value Lightning passes
    to set_epoch (processed epochs; a checkpoint taken at validation end has one more processed than completed).
    """
    epoch = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0
    return DataLoader(
        SeededSamples(dataset),
        batch_size=batch_size,
        sampler=EpochShuffleSampler(dataset_length(dataset), seed, epoch),
        num_workers=num_workers,
        collate_fn=collate_fn,
        # The loader's own draws (its workers' base seed) come from here, never from the global generator.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def first_images(dataset: Dataset, count: int, split: str) -> torch.Tensor:
    """The images of the first `count` items of `dataset` (cycled if it is smaller), stacked: the latency
    protocol's fixed set. Items are (image, label or target) pairs."""
    size = dataset_length(dataset)
    if size == 0:
        raise DatasetError(f"the {split!r} split is empty: no images to time")
    indices = itertools.islice(itertools.cycle(range(size)), count)
    return torch.stack([dataset[i][0] for i in indices])


def held_out_indices(size: int, count: int, seed: int) -> list[int]:
    """`count` positions out of `size` drawn by `seed` from the end of the permutation that `sampled_images` draws
    from the start: a set apart from a calibration set of the same seed as long as the two fit in the split."""
    if size == 0:
        raise DatasetError("the split is empty: no images to hold out")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return sorted(order[-count:].tolist())


def sampled_images(dataset: Dataset, count: int, seed: int) -> torch.Tensor:
    """The images of `count` items drawn without replacement by `seed` (all of them if there are fewer), stacked:
    e.g. a quantizer's calibration set, which the first items of a class-sorted split would not represent."""
    size = dataset_length(dataset)
    if size == 0:
        raise DatasetError("the split is empty: no images to sample")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count]
    return torch.stack([dataset[i][0] for i in order.tolist()])
