"""Small detectors, batches and distillation methods for the detection distillation tests (FitNet, Chen et al. 2017,
ScaleKD and its ablations, the MMDetection families): everything at 64 x 64 on one thread."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgecomp.config import build
from edgecomp.distill.alignment import teacher_input
from edgecomp.distill.distiller import DistillationBatch
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from tests.conftest import compose_config

SIZE = 64  # every family's strides divide it; small enough for a step in well under a second


def detector(family: type, seed: int = 0, **settings):
    """A detector of `family` (an adapter class) at SIZE with 3 classes, its weights drawn from `seed`; Faster R-CNN
    with fewer proposals and RoIs, for speed."""
    torch.manual_seed(seed)
    if family is FasterRCNNAdapter:
        settings = {"proposals_train": 100, "rois_per_image": 32, **settings}
    return family(3, SIZE, **settings)


def compressor(name: str, *overrides: str):
    """The distillation compressor `name` as experiment=smoke_scalekd configures it, without the student's warm-up
    (the first step distils)."""
    overrides = ["compressor.schedule.student_warmup=0", *overrides]
    cfg = compose_config("compress", ["experiment=smoke_scalekd", f"compressor={name}", *overrides])
    return build(cfg.compressor)


def batch_of(count: int = 2, seed: int = 0, method=None) -> tuple:
    """`count` random images with one to three objects each: (images, targets); for a distillation `method` whose
    teacher sees its native pixels (teacher_input=native at teacher_scale s), the two-resolution batch a
    DetectionDataModule.with_teacher_scale(s) gives, (images, targets, teacher_images): random images at s x SIZE,
    the student's their area-downsampling, each target's boxes also in the teacher's frame."""
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 40.0, 52.0, 50.0], [20.0, 44.0, 28.0, 52.0]])
    targets = [{"boxes": boxes[: 1 + i % 3], "labels": torch.arange(1 + i % 3) % 3} for i in range(count)]
    generator = torch.Generator().manual_seed(seed)
    if method is None or not method.native_teacher:
        return torch.rand(count, 3, SIZE, SIZE, generator=generator), targets
    scale = method.teacher_scale
    teacher_images = torch.rand(count, 3, round(SIZE * scale), round(SIZE * scale), generator=generator)
    images = F.interpolate(teacher_images, size=(SIZE, SIZE), mode="area")
    return images, [{**t, "teacher_boxes": t["boxes"] * scale} for t in targets], teacher_images


def targets_for(count: int) -> list[dict[str, torch.Tensor]]:
    """Two objects in the first image, none in the second (an empty image must work), then repeat."""
    with_objects = {
        "boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 40.0, 52.0, 50.0]]),
        "labels": torch.tensor([0, 2]),
    }
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return [with_objects if i % 2 == 0 else empty for i in range(count)]  # fmt: skip


def images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def distillation_batch(student, teacher, distiller, batch=None) -> DistillationBatch:
    """What a distillation step works on: the teacher's features of the batch at its scale, the student's features,
    head outputs and detection step (`batch`: (images, targets); by default two images, the second without
    objects)."""
    images_, targets = batch if batch is not None else (images(2), targets_for(2))
    with torch.no_grad():
        teacher_features = teacher.features(teacher_input(images_, distiller.teacher_scale))
    features = student.features(images_)
    head = student.head(features.pyramid)
    torch.manual_seed(0)  # Faster R-CNN samples its proposals
    step = distiller.student_view.detection_step(features.pyramid, head, targets)
    return DistillationBatch(images_, targets, features, head, step, teacher_features)
