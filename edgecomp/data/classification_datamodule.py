"""The LightningDataModule for image classification over any source with a `dataset(split, transform)` method
(the loaders and the latency images: edgecomp.data.image_datamodule)."""

from __future__ import annotations

import copy

import torch
from torch.utils.data import Dataset, Subset

from edgecomp.data.image_datamodule import ImageDataModule
from edgecomp.data.sampling import held_out_indices, sampled_images
from edgecomp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform


class ClassificationDataModule(ImageDataModule):
    """Images and their class labels from `source` (any object with a `dataset(split, transform)` method)."""

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
        super().__init__(train_split, eval_split, image_size, batch_size, num_workers, seed)
        self.source = source
        self.train_tf = train_transform(image_size, augment, mean, std)
        self.eval_tf = eval_transform(image_size, mean, std)
        self._train: Dataset | None = None
        self._eval: Dataset | None = None

    def train_set(self) -> Dataset:
        if self._train is None:
            self._train = self.source.dataset(self.train_split, self.train_tf)
        return self._train

    def eval_set(self) -> Dataset:
        if self._eval is None:
            self._eval = self.source.dataset(self.eval_split, self.eval_tf)
        return self._eval

    def setup(self, stage: str | None = None) -> None:
        # Read both splits now, so a missing or malformed dataset fails before training starts.
        self.train_set()
        self.eval_set()

    def calibration_images(self, count: int) -> torch.Tensor:
        """`count` training images drawn by the seed, prepared as for evaluation (no augmentation)."""
        return sampled_images(self.source.dataset(self.train_split, self.eval_tf), count, self.seed)

    def held_out(self, count: int) -> ClassificationDataModule:
        """A copy whose evaluation split is `count` training images drawn by the seed (see held_out_indices),
        prepared as for evaluation: a labelled set for decisions a compressor takes, never the evaluation split."""
        training = self.source.dataset(self.train_split, self.eval_tf)
        held = copy.copy(self)
        held._eval = Subset(training, held_out_indices(len(training), count, self.seed))
        held.eval_split = f"{self.train_split} (held out)"
        return held
