"""One real training step of each detection distillation method through a Lightning Trainer: FitNet, Chen et al.
2017 output distillation and ScaleKD (Faster R-CNN's two stages included), with finite logged losses
(tests/unit/test_distill_baselines.py: what each method's terms are made of)."""

from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from tests.helpers.distillation import batch_of, compressor, detector

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# alpha, beta, gamma of eq. 7 as conf/compressor/{fitnet,od2017,scalekd}.yaml set them (ScaleKD's one-stage values).
EQ7_WEIGHTS = {"loss_feat": 0.01, "loss_cls": 0.2, "loss_bbox": 0.05}


def one_step(method, student, teacher) -> dict[str, float]:
    """One optimisation step of `method`'s LightningModule through a Lightning Trainer; the logged metrics."""
    module = method.training_module(
        student, teacher, optimizer=lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9), warmup_steps=1
    )
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one batch, no validation, the teacher in eval mode: all on purpose
        trainer.fit(module, DataLoader([batch_of(method=method)], batch_size=None))
    assert module.steps_done == 1
    assert not all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())  # the student did step
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())  # the teacher did not
    return {k.removeprefix("train/"): float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize(
    ("name", "overrides", "terms"),
    [
        ("fitnet", [], {"loss_feat"}),
        ("fitnet", ["compressor.features=pyramid"], {"loss_feat"}),
        ("od2017", [], {"loss_cls", "loss_bbox"}),
        ("scalekd", ["compressor.csa.dim=32", "compressor.sdf.embed_channels=16"], {"loss_feat", "loss_cls", "loss_bbox", "loss_assistant"}),
    ],
)  # fmt: skip
def test_each_method_takes_a_step_on_yolov8_with_finite_logged_terms(name, overrides, terms):
    method = compressor(name, *overrides)
    metrics = one_step(method, detector(YOLOv8Adapter, 0, scale="n"), detector(YOLOv8Adapter, 1, scale="s"))
    assert terms | {"loss_det", "loss", "det_box", "det_cls", "det_dfl"} <= set(metrics)
    assert not ({"loss_feat", "loss_cls", "loss_bbox"} - terms) & set(metrics)  # a method logs only its own terms
    assert all(math.isfinite(v) for v in metrics.values())
    expected = metrics["loss_det"] + sum(EQ7_WEIGHTS[t] * metrics[t] for t in terms if t != "loss_assistant")
    assert metrics["distilling"] == 1.0 and metrics["loss"] == pytest.approx(expected, rel=1e-4)  # eq. 7


@pytest.mark.parametrize(
    ("name", "family", "student_backbone", "teacher_backbone"),
    [
        ("scalekd_two_stage", FasterRCNNAdapter, "resnet18", "resnet34"),
        ("scalekd", RetinaNetAdapter, "mobilenet_v2", "resnet18"),
        ("scalekd", FCOSAdapter, "resnet18", "resnet18"),
    ],
)
def test_the_torchvision_families_take_a_step_teacher_and_student_backbones_may_differ(
    name, family, student_backbone, teacher_backbone
):
    method = (
        compressor(name, "compressor.csa.dim=32", "compressor.sdf.embed_channels=16")
        if "scalekd" in name
        else compressor(name)
    )
    student = detector(family, 0, backbone=student_backbone)
    teacher = detector(family, 1, backbone=teacher_backbone)
    metrics = one_step(method, student, teacher)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["loss_cls"] > 0 and metrics["loss_bbox"] >= 0
    if family is FasterRCNNAdapter:
        assert {"det_loss_objectness", "det_loss_rpn_box_reg", "det_loss_classifier", "det_loss_box_reg"} <= set(
            metrics
        )
