"""The detection distillation framework on every family and method: one real training step of FitNet, Chen et al.
2017 output distillation and ScaleKD (Faster R-CNN's two stages included) with finite logged losses, what each
method's terms are made of, and the perturbation study's shift of the reference's boxes."""

from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.distill.distiller import DistillationBatch
from edgecomp.distill.families import family_view
from edgecomp.distill.output_losses import bounded_regression_loss, soft_label_loss
from edgecomp.errors import ConfigError
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from tests.conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
# alpha, beta, gamma of eq. 7 as conf/compressor/{fitnet,od2017,scalekd}.yaml set them (ScaleKD's one-stage values).
EQ7_WEIGHTS = {"loss_feat": 0.01, "loss_cls": 0.2, "loss_bbox": 0.05}


def batch_of(count: int = 2, seed: int = 0) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 40.0, 52.0, 50.0], [20.0, 44.0, 28.0, 52.0]])
    targets = [{"boxes": boxes[: 1 + i % 3], "labels": torch.arange(1 + i % 3) % 3} for i in range(count)]
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)), targets


def compressor(name: str, *overrides: str):
    # No warm-up: the one step distils.
    overrides = ["compressor.schedule.student_warmup=0", *overrides]
    cfg = compose_config("compress", ["experiment=smoke_scalekd", f"compressor={name}", *overrides])
    return build(cfg.compressor)


def detector(family: type, seed: int, **settings):
    torch.manual_seed(seed)
    if family is FasterRCNNAdapter:
        settings = {"proposals_train": 100, "rois_per_image": 32, **settings}
    return family(3, SIZE, **settings)


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
        trainer.fit(module, DataLoader([batch_of()], batch_size=None))
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


def distillation_batch(distiller, student, teacher) -> DistillationBatch:
    images, targets = batch_of(seed=3)
    with torch.no_grad():
        teacher_features = teacher.features(
            torch.nn.functional.interpolate(images, scale_factor=distiller.teacher_scale, mode="bilinear")
        )
    features = student.features(images)
    head = student.head(features.pyramid)
    torch.manual_seed(0)  # Faster R-CNN samples its proposals
    step = distiller.student_view.detection_step(features.pyramid, head, targets)
    return DistillationBatch(images, targets, features, head, step, teacher_features)  # fmt: skip


def test_chen_et_al_distil_the_teachers_levels_of_the_students_strides_and_its_roi_head_on_the_students_proposals():
    student, teacher = detector(FasterRCNNAdapter, 0).train(), detector(FasterRCNNAdapter, 1).eval()
    distiller = compressor("od2017").build_distiller(family_view(student), family_view(teacher))
    # teacher_scale 2: the teacher's P3..pool (strides 8..64 / 2) are the student's P2..P5; the student's pool
    # (stride 64) has no partner of its stride and is not distilled.
    assert distiller.reference_levels["dense"] == [1, 2, 3, 4, None]
    batch = distillation_batch(distiller, student, teacher)
    reference = distiller.teacher_view.outputs_on(
        batch.teacher.pyramid, teacher.head(batch.teacher.pyramid), batch.student_step, 2.0
    )
    assert reference["roi"].logits[0].shape == batch.student_step.outputs["roi"].logits[0].shape  # same proposals
    assert reference["dense"].logits[1].shape == batch.student_step.outputs["dense"].logits[0].shape  # same grid


def test_perturbing_the_references_boxes_changes_only_the_bounded_regression_loss():
    student, teacher = detector(RetinaNetAdapter, 0).train(), detector(RetinaNetAdapter, 1).eval()
    losses = {}
    for shift in (0, 6, 12):
        distiller = compressor("od2017", f"compressor.perturb_px={shift}").build_distiller(
            family_view(student), family_view(teacher)
        )
        losses[shift] = distiller.losses(distillation_batch(distiller, student, teacher))
    assert losses[0]["loss_cls"].item() == losses[6]["loss_cls"].item() == losses[12]["loss_cls"].item()
    assert len({losses[s]["loss_bbox"].item() for s in (0, 6, 12)}) == 3


def test_the_output_losses_on_hand_made_predictions():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    assert soft_label_loss(logits, logits.clone(), "sigmoid").item() == pytest.approx(0.0, abs=1e-6)
    assert soft_label_loss(logits, logits.clone(), "softmax", background_weight=1.0).item() == pytest.approx(
        0.0, abs=1e-6
    )
    assert soft_label_loss(logits, -logits, "sigmoid").item() > 0.5
    # Softmax, background weighted 1.5: -sum_c w_c p_t(c) log(p_s(c) / p_t(c)), averaged over the 2 predictions.
    teacher = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p_t, log_p_s = teacher.softmax(-1), logits.log_softmax(-1)
    weights = torch.tensor([1.5, 1.0, 1.0])
    expected = (weights * p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    assert soft_label_loss(logits, teacher, "softmax", background_weight=1.5).item() == pytest.approx(
        expected.item(), rel=1e-5
    )

    student = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]], requires_grad=True)
    reference = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.zeros(3, 4)
    positives = torch.tensor([True, True, False])
    # Positive 0: student error 1 > reference error 0 -> 1. Positive 1: student error 1 < reference's 4 -> 0.
    # The third is no positive. Mean over the 2 positives: 0.5; with a margin of 5 both count: (1 + 1) / 2.
    loss = bounded_regression_loss(student, reference, target, positives)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.equal(student.grad[1], torch.zeros(4)) and student.grad[0, 0] == pytest.approx(1.0)
    assert bounded_regression_loss(student, reference, target, positives, margin=5.0).item() == pytest.approx(1.0)
    assert bounded_regression_loss(student, reference, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("fitnet", "compressor.features=neck", "compressor.features"),
        ("fitnet", "compressor.alpha=-0.1", "compressor.alpha"),
        ("od2017", "compressor.output.bound_margin=-1", "compressor.output.bound_margin"),
        ("od2017", "compressor.teacher_scale=0", "compressor.teacher_scale"),
        ("od2017", "compressor.epochs=0", "compressor.epochs"),
    ],
)
def test_baseline_settings_out_of_range_are_refused(name, override, key):
    with pytest.raises(ConfigError, match=key):
        compressor(name, override)


def test_a_family_mismatch_is_refused_for_the_baselines_too():
    cfg = compose_config(
        "compress", ["experiment=smoke_scalekd", "compressor=od2017", "model=retinanet", "teacher=fcos"]
    )
    with pytest.raises(ConfigError, match="one family"):
        build(cfg.compressor).check(RunSpec.from_config(cfg))
