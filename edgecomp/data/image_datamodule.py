"""What every task's LightningDataModule shares: a training and an evaluation split, their loaders, the fixed latency
images. A task's module says how it reads its splits (`train_set()`, `eval_set()`) and how its samples are batched
(`collate_fn`); the rest is here once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from edgecomp.data.sampling import first_images, seeded_train_loader


class ImageDataModule(pl.LightningDataModule):
    """Train on `train_split` and validate and evaluate on `eval_split`, at `image_size`, in batches of `batch_size`
    read by `num_workers` worker processes. The training order and augmentation are functions of (`seed`, epoch)
    alone (edgecomp.data.sampling), so a run resumed from a checkpoint sees the same batches as one that was never
    interrupted."""

    # How samples become a batch: None for PyTorch's default (tensors stacked); a staticmethod in a subclass whose
    # targets vary in size from image to image.
    collate_fn: Callable[[list[Any]], Any] | None = None

    def __init__(
        self, train_split: str, eval_split: str, image_size: int, batch_size: int, num_workers: int, seed: int
    ) -> None:
        super().__init__()
        self.train_split = train_split
        self.eval_split = eval_split
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def train_set(self) -> Dataset:
        """The training split, augmented."""
        raise NotImplementedError

    def eval_set(self) -> Dataset:
        """The evaluation split, prepared as for evaluation."""
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return seeded_train_loader(
            self.train_set(), self.batch_size, self.num_workers, self.seed, self.trainer, collate_fn=self.collate_fn
        )

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader()

    def eval_dataloader(self) -> DataLoader:
        return DataLoader(
            self.eval_set(),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )

    def fixed_images(self, count: int) -> torch.Tensor:
        """The first `count` evaluation images (cycled if the split is smaller), prepared as for evaluation: the
        latency protocol's set."""
        return first_images(self.eval_set(), count, self.eval_split)
