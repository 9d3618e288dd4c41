"""The detection distillation framework on every family and method: what each method's terms are made of (FitNet,
Chen et al. 2017 output distillation, ScaleKD; Faster R-CNN's two stages included), and the perturbation study's shift
of the reference's boxes (tests/integration/test_distill_steps.py: a real training step of each)."""

from __future__ import annotations

import pytest
import torch

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.distill.families import family_view
from edgecomp.distill.output_losses import bounded_regression_loss, soft_label_loss
from edgecomp.errors import ConfigError
from edgecomp.models.detection.torchvision_dense import RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from tests.conftest import compose_config
from tests.helpers.distillation import batch_of, compressor, detector, distillation_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_chen_et_al_distil_the_teachers_levels_of_the_students_strides_and_its_roi_head_on_the_students_proposals():
    student, teacher = detector(FasterRCNNAdapter, 0).train(), detector(FasterRCNNAdapter, 1).eval()
    distiller = compressor("od2017").build_distiller(family_view(student), family_view(teacher))
    # teacher_scale 2: the teacher's P3..pool (strides 8..64 / 2) are the student's P2..P5; the student's pool
    # (stride 64) has no partner of its stride and is not distilled.
    assert distiller.reference_levels["dense"] == [1, 2, 3, 4, None]
    batch = distillation_batch(student, teacher, distiller, batch_of(seed=3))
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
        losses[shift] = distiller.losses(distillation_batch(student, teacher, distiller, batch_of(seed=3)))
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
