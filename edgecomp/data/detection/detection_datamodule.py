"""The LightningDataModule for detection over any reader that returns a DetectionIndex.

A batch is `(images, targets)`: images a float tensor (N, 3, S, S) in [0, 1], letterboxed to S = `image_size`
(edgecomp.data.detection.letterbox), and one target per image with "boxes" (M, 4) xyxy in the S x S frame and
"labels" (M,) int64 in 0..C-1: the conventions of edgecomp.models.detection.adapter. The dataset's own category ids
(COCO's 1..90, YOLO's 0..79, VisDrone's 1..10) map to contiguous labels in ascending id order, and back through
`category_ids` when predictions are scored. Targets leave out ignore regions (iscrowd = 1, as torchvision's
references train), and training targets the boxes that the resize shrinks under `min_box_size` pixels; evaluation
targets also carry "image_id" and "scale" (sx, sy, sx, sy), so predictions can be put back in the original pixels,
where the COCO metrics compare them with the full ground truth (ignore regions included).

A distillation whose teacher sees `teacher_scale` x the resolution trains on `with_teacher_scale(s)`'s batches,
`(images, targets, teacher_images)`: the teacher's images (N, 3, sS, sS) letterboxed from the same stored images under
the same augmentation, each target with its "teacher_boxes" in that frame.

Training order and augmentation follow (seed, epoch) alone, as for classification (edgecomp.data.sampling).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from edgecomp.data.detection.dataset import DetectionDataset
from edgecomp.data.detection.index import DetectionIndex
from edgecomp.data.detection.letterbox import content_size, letterbox
from edgecomp.data.detection.visdrone import split_into_patches
from edgecomp.data.image_datamodule import ImageDataModule
from edgecomp.data.sampling import held_out_indices, sampled_images
from edgecomp.errors import ConfigError, DatasetError

AUGMENTS = ("none", "flip")


class LetterboxedDetections(Dataset):
    """A DetectionDataset letterboxed to S x S with contiguous labels (see the module docstring).

    `teacher_scale` (training only): each item also carries the image as a distillation teacher `teacher_scale` x the
    student's resolution sees it -- `(image, target, teacher_image)`, with the boxes in the teacher's frame as
    `target["teacher_boxes"]`. Both images are resized from the stored image under the same augmentation (the same
    flip), never one from the other, so the teacher's holds whatever detail the stored image has beyond the
    student's resolution. The teacher's content is `teacher_scale` x the student's content size, rounded to whole
    pixels (its canvas `teacher_scale` x S): for a whole scale its boxes are exactly the student's times
    `teacher_scale` and every pyramid cell of the teacher covers an exact fraction of a student's (for 1.5, an odd
    side is off by half a pixel).
    """

    def __init__(
        self,
        index: DetectionIndex,
        image_size: int,
        label_of: Mapping[int, int],
        train: bool,
        augment: str = "none",
        min_box_size: float = 1.0,
        teacher_scale: float | None = None,
    ) -> None:
        if augment not in AUGMENTS:
            raise ConfigError(f"detection augment must be one of {AUGMENTS}, got {augment!r}")
        self.source = DetectionDataset(index)
        self.image_size = image_size
        self.label_of = dict(label_of)
        self.train = train
        self.augment = augment if train else "none"
        self.min_box_size = min_box_size
        self.teacher_size = None if teacher_scale is None else teacher_image_size(image_size, teacher_scale)
        self.teacher_scale = teacher_scale

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, position: int) -> tuple[Any, ...]:
        original, target = self.source[position]
        keep = target["iscrowd"] == 0  # ignore regions are for the metrics, never a target to learn
        original_boxes, category_ids = target["boxes"][keep], target["labels"][keep]
        if self.augment == "flip" and bool(torch.rand(()) < 0.5):  # drawn under the sample's own seed
            width = original.shape[-1]
            original = original.flip(-1)
            original_boxes = torch.stack(
                [
                    width - original_boxes[:, 2],
                    original_boxes[:, 1],
                    width - original_boxes[:, 0],
                    original_boxes[:, 3],
                ],
                dim=1,
            )
        image, boxes, scale = letterbox(original, original_boxes, self.image_size)
        labels = torch.tensor([self.label_of[int(c)] for c in category_ids], dtype=torch.int64)
        if not self.train:
            return image, {"boxes": boxes, "labels": labels, "image_id": target["image_id"], "scale": scale}
        sides = boxes[:, 2:] - boxes[:, :2]
        keep = (sides >= self.min_box_size).all(dim=1)  # judged at the student's size, for both frames
        sample: dict[str, Any] = {"boxes": boxes[keep], "labels": labels[keep]}
        if self.teacher_scale is None or self.teacher_size is None:
            return image, sample
        stored_height, stored_width = original.shape[-2:]
        height, width = content_size(stored_height, stored_width, self.image_size)
        content = (round(height * self.teacher_scale), round(width * self.teacher_scale))
        teacher_image, teacher_boxes, _ = letterbox(original, original_boxes, self.teacher_size, content)
        sample["teacher_boxes"] = teacher_boxes[keep]
        return image, sample, teacher_image


def teacher_image_size(image_size: int, teacher_scale: float) -> int:
    """The input size of a teacher at `teacher_scale` x a student's `image_size`: a whole number of pixels."""
    size = image_size * teacher_scale
    if teacher_scale <= 0 or size != round(size):
        raise ConfigError(f"teacher_scale={teacher_scale:g} x image_size={image_size} is not a whole number of pixels")
    return round(size)


def collate(batch: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """(images, targets) or, for two-resolution items, (images, targets, teacher_images): images stacked."""
    images, targets, *teacher_images = zip(*batch, strict=True)
    return (torch.stack(images), list(targets), *(torch.stack(column) for column in teacher_images))


class DetectionDataModule(ImageDataModule):
    """Train on `splits[train_split]`, validate and evaluate on `splits[eval_split]`, both read by `reader`.

    `patches_dir`: train on every training image cut into four quadrants, written there once (ScaleKD's VisDrone
    setting; edgecomp.data.detection.visdrone.split_into_patches). Evaluation always uses whole images.
    """

    collate_fn = staticmethod(collate)  # an image's boxes and labels are as many as it has objects

    def __init__(
        self,
        reader: Callable[..., DetectionIndex],
        splits: Mapping[str, str],
        num_classes: int,
        image_size: int,
        train_split: str = "train",
        eval_split: str = "val",
        batch_size: int = 8,
        num_workers: int = 2,
        augment: str = "flip",
        seed: int = 0,
        min_box_size: float = 1.0,
        patches_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(train_split, eval_split, image_size, batch_size, num_workers, seed)
        for role, split in (("train_split", train_split), ("eval_split", eval_split)):
            if split not in splits:
                raise ConfigError(f"{role}={split} is not one of the dataset's splits {list(splits)}")
        if augment not in AUGMENTS:
            raise ConfigError(f"detection augment must be one of {AUGMENTS}, got {augment!r}")
        self.reader = reader
        self.splits = dict(splits)
        self.num_classes = num_classes
        self.augment = augment
        self.min_box_size = min_box_size
        self.patches_dir = patches_dir
        self.teacher_scale: float | None = None  # set on a copy by with_teacher_scale
        self._train_index: DetectionIndex | None = None
        self._eval_index: DetectionIndex | None = None
        self._category_ids: list[int] | None = None

    @property
    def eval_index(self) -> DetectionIndex:
        """The evaluation split's ground truth, in the original pixels: what the COCO metrics compare with."""
        if self._eval_index is None:
            index = self.reader(split=self.splits[self.eval_split])
            self._category_ids = self._checked_category_ids(index)
            self._eval_index = index
        return self._eval_index

    @property
    def category_ids(self) -> list[int]:
        """The dataset's category ids in label order: label k is category `category_ids[k]`."""
        if self._category_ids is None:
            # Read with the evaluation split (which checks them against num_classes): the same ids again, here.
            self._category_ids = self._checked_category_ids(self.eval_index)
        return self._category_ids

    @property
    def train_index(self) -> DetectionIndex:
        if self._train_index is None:
            index = self.reader(split=self.splits[self.train_split])
            if self.patches_dir is not None:
                index = split_into_patches(index, Path(self.patches_dir) / self.splits[self.train_split])
            if self._checked_category_ids(index) != self.category_ids:
                raise DatasetError(
                    f"the {self.train_split!r} and {self.eval_split!r} splits have different categories: "
                    f"{self._checked_category_ids(index)} and {self.category_ids}"
                )
            self._train_index = index
        return self._train_index

    def _checked_category_ids(self, index: DetectionIndex) -> list[int]:
        ids = sorted(category["id"] for category in index.categories)
        if len(ids) != self.num_classes:
            raise ConfigError(
                f"dataset.num_classes={self.num_classes}, but the dataset has {len(ids)} categories (ids {ids[:10]}"
                f"{' ...' if len(ids) > 10 else ''}); set dataset.num_classes={len(ids)}"
            )
        return ids

    @property
    def label_of(self) -> dict[int, int]:
        return {category_id: label for label, category_id in enumerate(self.category_ids)}

    def setup(self, stage: str | None = None) -> None:
        # Read both splits now, so a missing or malformed dataset fails before training starts.
        _ = self.eval_index, self.train_index

    def train_set(self) -> LetterboxedDetections:
        return LetterboxedDetections(
            self.train_index, self.image_size, self.label_of, True, self.augment, self.min_box_size, self.teacher_scale
        )

    def with_teacher_scale(self, teacher_scale: float) -> DetectionDataModule:
        """A copy whose training batches also carry each image at `teacher_scale` x the resolution, resized from the
        stored image under the same augmentation: `(images, targets, teacher_images)`, each target with its
        `teacher_boxes` (LetterboxedDetections). What a distillation teacher that sees high-resolution pixels is
        fed; evaluation batches stay the student's."""
        teacher_image_size(self.image_size, teacher_scale)  # refused here, before any training, if not whole
        copied = copy.copy(self)
        copied.teacher_scale = float(teacher_scale)
        return copied

    def at_image_size(self, image_size: int) -> DetectionDataModule:
        """A copy that letterboxes the same stored images to `image_size` (a high-resolution teacher's training and
        evaluation data), single-resolution."""
        copied = copy.copy(self)
        copied.image_size = int(image_size)
        copied.teacher_scale = None
        return copied

    def eval_set(self) -> LetterboxedDetections:
        return LetterboxedDetections(self.eval_index, self.image_size, self.label_of, False)

    def calibration_images(self, count: int) -> torch.Tensor:
        """`count` training images drawn by the seed, letterboxed as for evaluation (no augmentation)."""
        return sampled_images(
            LetterboxedDetections(self.train_index, self.image_size, self.label_of, False), count, self.seed
        )

    def held_out(self, count: int) -> DetectionDataModule:
        """A copy whose evaluation split is `count` training images drawn by the seed (see held_out_indices), with
        their ground truth: a labelled set for decisions a compressor takes, never the evaluation split."""
        training = self.train_index
        chosen = [training.images[i] for i in held_out_indices(len(training.images), count, self.seed)]
        ids = {image["id"] for image in chosen}
        held = copy.copy(self)
        _ = self.category_ids  # read from the evaluation split, which the copy keeps as its label space
        held._eval_index = DetectionIndex(
            images=chosen,
            annotations=[a for a in training.annotations if a["image_id"] in ids],
            categories=training.categories,
        )
        held.eval_split = f"{self.train_split} (held out)"
        return held
