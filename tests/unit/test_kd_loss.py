"""compressor=kd, what needs no training: the Hinton loss (against a hand computation, alpha=1, the T^2 factor) and
the configs it refuses (tests/integration/test_kd.py: training with it; tests/integration/test_kd_entry_point.py: compress.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.lit.hinton_distillation_module import hinton_loss
from tests.conftest import compose_config


def softmax(logits: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(z / temperature) for z in logits]
    return [e / sum(exps) for e in exps]


def test_hinton_loss_is_the_formula_on_a_hand_computed_batch():
    student = [[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]]
    teacher = [[0.0, 1.0, 3.0], [2.0, 0.0, -2.0]]
    labels = [1, 2]
    temperature, alpha = 2.0, 0.25
    # By hand: cross-entropy and KL(p_teacher || p_student) at T, each averaged over the 2 samples.
    cross_entropy = sum(-math.log(softmax(s)[y]) for s, y in zip(student, labels, strict=True)) / 2
    kl = 0.0
    for s, t in zip(student, teacher, strict=True):
        p_s, p_t = softmax(s, temperature), softmax(t, temperature)
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True)) / 2
    expected = alpha * cross_entropy + (1 - alpha) * temperature**2 * kl

    total, ce, kd = hinton_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), temperature, alpha)
    assert ce.item() == pytest.approx(cross_entropy, rel=1e-6)
    assert kd.item() == pytest.approx(temperature**2 * kl, rel=1e-5)
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_with_alpha_one_it_is_plain_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 10, generator=generator), 5 * torch.randn(8, 10, generator=generator)
    labels = torch.randint(0, 10, (8,), generator=generator)
    total, _, kd = hinton_loss(student, teacher, labels, temperature=10.0, alpha=1.0)
    assert kd.item() > 0.01  # the teacher disagrees: only alpha removes the term
    assert torch.equal(total, F.cross_entropy(student, labels))


def test_t_squared_keeps_the_soft_target_gradient_independent_of_the_temperature():
    """Hinton's reason for T^2: the softened KL's gradients shrink as 1/T^2, so without it doubling T would quarter
    the distillation signal. With it the gradient at T=10 and T=20 is the same to a few percent."""
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(16, 10, generator=generator)
    labels = torch.zeros(16, dtype=torch.long)

    def gradient(temperature: float) -> torch.Tensor:
        student = torch.randn(16, 10, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        total, _, _ = hinton_loss(student, teacher, labels, temperature, alpha=0.0)
        total.backward()
        return student.grad

    at_10, at_20 = gradient(10.0), gradient(20.0)
    assert at_20.norm() / at_10.norm() == pytest.approx(1.0, abs=0.05)  # 0.25 without the T^2 factor
    assert F.cosine_similarity(at_10.flatten(), at_20.flatten(), dim=0) > 0.99


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "compressor=kd needs a teacher: pick teacher=<model>"),
        (["teacher=mobilenetv3_large_100", "teacher.num_classes=5"], "teacher.num_classes=5 but model.num_classes=10"),
        (["teacher=yolov8n"], "distils a classifier from a classifier's logits"),
    ],
)
def test_a_config_kd_cannot_work_with_is_refused_by_the_check(overrides, message):
    cfg = compose_config("compress", ["experiment=smoke", "compressor=kd", *overrides])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build(cfg.compressor).check(RunSpec.from_config(cfg))


@pytest.mark.parametrize(
    "override", ["compressor.T=0", "compressor.alpha=1.5", "compressor.epochs=0", "compressor.lr=0"]
)
def test_settings_out_of_range_are_refused_when_the_compressor_is_built(override):
    cfg = compose_config("compress", ["experiment=smoke", "compressor=kd", "teacher=mobilenetv3_large_100", override])
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        build(cfg.compressor)
