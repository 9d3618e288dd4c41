"""The LightningDataModule for image classification over any source with a `dataset(split, transform)` method."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from edgecomp.data.sampling import first_images, held_out_indices, sampled_images, seeded_train_loader
from edgecomp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform


class ClassificationDataModule(pl.LightningDataModule):
    """Train on `train_split`, validate and evaluate on `eval_split`.

    The training order and augmentation are functions of (`seed`, epoch) alone (see edgecomp.data.sampling),
    so a run resumed from a checkpoint sees the same batches as one that was never interrupted.
    """

    def __init__(
        self,
        source,
        train_split: str = "train",
        eval_split: str = "val",
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: str = "standard",
        seed: int = 0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.source = source
        self.train_split = train_split
        self.eval_split = eval_split
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_tf = train_transform(image_size, augment, mean, std)
        self.eval_tf = eval_transform(image_size, mean, std)
        self._train: Dataset | None = None
        self._eval: Dataset | None = None

    @property
    def train_set(self) -> Dataset:
        if self._train is None:
            self._train = self.source.dataset(self.train_split, self.train_tf)
        return self._train

    @property
    def eval_set(self) -> Dataset:
        if self._eval is None:
            self._eval = self.source.dataset(self.eval_split, self.eval_tf)
        return self._eval

    def setup(self, stage: str | None = None) -> None:
        # Touch both splits so a missing or malformed dataset fails before training starts.
        _ = self.train_set, self.eval_set

    def train_dataloader(self) -> DataLoader:
        return seeded_train_loader(self.train_set, self.batch_size, self.num_workers, self.seed, self.trainer)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader()

    def eval_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

    def calibration_images(self, count: int) -> torch.Tensor:
        """`count` training images drawn by the seed, prepared as for evaluation (no augmentation)."""
        return sampled_images(self.source.dataset(self.train_split, self.eval_tf), count, self.seed)

    def fixed_images(self, count: int) -> torch.Tensor:
        """The first `count` evaluation images (cycled if the split is smaller): the latency protocol's set."""
        return first_images(self.eval_set, count, self.eval_split)

    def held_out(self, count: int) -> ClassificationDataModule:
        """A copy whose evaluation split is `count` training images drawn by the seed (see held_out_indices),
        prepared as for evaluation: a labelled set for decisions a compressor takes, never the evaluation split."""
        training = self.source.dataset(self.train_split, self.eval_tf)
        held = copy.copy(self)
        held._eval = Subset(training, held_out_indices(len(training), count, self.seed))
        held.eval_split = f"{self.train_split} (held out)"
        return held
