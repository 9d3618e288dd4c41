"""ScaleKD's ablation switches mean what the paper's tables mean (Tables 1, 5-7): each part can be switched off, the
plain cross-attention is plain, the residual is the one named, L_bbox can be the paper's direct regression, one gamma
means the same in every family's box space (tests/integration/test_scalekd_training.py: ScaleKD's training loop)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir

from edgecomp.config import build
from edgecomp.distill.csa import CrossScaleAssistant, PlainCrossAttention
from edgecomp.distill.families import family_view
from edgecomp.errors import ConfigError
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from tests.conftest import CONF, compose_config
from tests.helpers.distillation import SIZE, batch_of, compressor, detector, distillation_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ("compressor.csa.dim=32", "compressor.sdf.embed_channels=16")
ARMS = ("student", "finetune", "fitnet", "od2017", "scalekd")

# ---------------------------------------------------------------------------------------------------- the assistant


def test_plain_attention_is_torchs_multihead_attention_on_the_same_weights():
    torch.manual_seed(0)
    plain = PlainCrossAttention(32, 48, 32, dim=32, heads=4)
    reference = nn.MultiheadAttention(32, 4, kdim=48, vdim=48, batch_first=True)
    with torch.no_grad():
        reference.q_proj_weight.copy_(plain.query.weight)
        reference.k_proj_weight.copy_(plain.key.weight)
        reference.v_proj_weight.copy_(plain.value.weight)
        reference.in_proj_bias.copy_(torch.cat([plain.query.bias, plain.key.bias, plain.value.bias]))
        reference.out_proj.weight.copy_(plain.output.weight)
        reference.out_proj.bias.copy_(plain.output.bias)
    query, key_value = torch.randn(2, 10, 32), torch.randn(2, 7, 48)
    expected, _ = reference(query, key_value, key_value, need_weights=False)
    assert torch.allclose(plain.attend(query, key_value), expected, atol=1e-5)


def test_plain_attention_has_no_aggregation_mlp_pooling_or_value_projection():
    plain = CrossScaleAssistant([16, 32], [24, 48], dim=32, heads=4, attention="plain")
    msc = CrossScaleAssistant([16, 32], [24, 48], dim=32, heads=4, attention="msc")
    assert all(isinstance(level, PlainCrossAttention) for level in plain.levels)
    plain_names = {name for name, _ in plain.named_parameters()}
    assert not any("aggregate" in name or "value_projections" in name for name in plain_names)
    assert any("aggregate" in name for name, _ in msc.named_parameters())
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in msc.parameters())
    # A plain level sees every teacher token: its output at one position depends on the whole teacher map.
    student, teacher = torch.randn(1, 16, 8, 8), torch.randn(1, 24, 8, 8, requires_grad=True)
    plain.levels[0](student, teacher)[0, :, 0, 0].sum().backward()
    assert bool((teacher.grad.abs().sum(dim=1) > 0).all())


@pytest.mark.parametrize("residual", ["teacher", "student", "none"])
def test_the_assistants_output_adds_the_residual_the_switch_names(residual):
    torch.manual_seed(0)
    csa = CrossScaleAssistant([16], [24], dim=32, heads=4, residual=residual)
    student, teacher = torch.randn(2, 16, 8, 8), torch.randn(2, 24, 8, 8)
    (output,) = csa([student], [teacher])
    attention = csa.levels[0](student, teacher)
    if residual == "teacher":
        expected = attention + csa.teacher_projections[0](teacher)
    else:
        expected = attention + student if residual == "student" else attention
        assert len(csa.teacher_projections) == 0  # no projection to train where it is not used
    assert torch.allclose(output, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- L_bbox


def eval_pair(family: type = YOLOv8Adapter, **settings):
    """A student and a teacher with the same weights, both in eval mode: on the same input their outputs are equal."""
    student = detector(family, 0, **settings).eval()
    return student, copy.deepcopy(student)


@pytest.mark.parametrize("loss", ["l2", "smooth_l1"])
def test_direct_regression_to_the_teachers_boxes_is_zero_at_no_shift_and_grows_with_it(loss):
    student, teacher = eval_pair(scale="n")
    values = {}
    for shift in (0, 6, 12):
        distiller = compressor(
            "od2017",
            "compressor.teacher_scale=1",
            f"compressor.output.bbox_loss={loss}",
            f"compressor.perturb_px={shift}",
        ).build_distiller(family_view(student), family_view(teacher))
        values[shift] = distiller.losses(distillation_batch(student, teacher, distiller, batch_of(seed=3)))[
            "loss_bbox"
        ].item()
    assert values[0] == pytest.approx(0.0, abs=1e-10)
    assert 0 < values[6] < values[12]
    if loss == "l2":  # the reference moved by s * u: mean ||s u||^2 grows with the square of the shift
        assert values[12] == pytest.approx(4 * values[6], rel=1e-4)


def test_the_bounded_loss_never_pulls_towards_the_teachers_boxes():
    """Chen et al.'s bound against the same student: its error never exceeds the reference's (they are equal), so
    L_bbox is zero however the reference is moved away from the ground truth... or towards it."""
    student, teacher = eval_pair(scale="n")
    distiller = compressor(
        "od2017", "compressor.teacher_scale=1", "compressor.output.bbox_loss=bounded"
    ).build_distiller(family_view(student), family_view(teacher))
    assert (
        distiller.losses(distillation_batch(student, teacher, distiller, batch_of(seed=3)))["loss_bbox"].item() == 0.0
    )


@pytest.mark.parametrize(
    ("family", "settings"), [(YOLOv8Adapter, {"scale": "n"}), (RetinaNetAdapter, {}), (FCOSAdapter, {})]
)
def test_in_relative_units_a_one_pixel_shift_is_one_over_the_objects_size_in_every_family(family, settings):
    """What makes one gamma mean the same in every family: a 32 px object moved by 1 px changes each box-space
    coordinate by about 1/32 (RetinaNet: its matched anchor's size, within the anchor scales' spread); in YOLOv8's
    and FCOS's own spaces the change is 1/stride, up to 4x larger at stride 8."""
    view = family_view(detector(family, 0, **settings).eval())
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    targets = [{"boxes": torch.tensor([[16.0, 16.0, 48.0, 48.0]]), "labels": torch.tensor([1])}]
    features = view.adapter.features(images)
    assignment = view.detection_step(features.pyramid, view.adapter.head(features.pyramid), targets).targets["dense"]
    positives = torch.cat(assignment.positives)
    shift = torch.cat(assignment.shift_per_pixel)[positives]
    relative = (shift / torch.cat(assignment.box_scale)[positives])[:, :2].abs()  # x and y (dx, dy or l, t)
    assert len(relative) > 0
    assert bool(((relative > 0.5 / 32) & (relative < 2 / 32)).all()), relative


# ---------------------------------------------------------------------------------------------------- perturbation


def test_perturb_px_moves_the_assistants_boxes_on_the_scalekd_path():
    student, teacher = eval_pair(scale="n")
    terms = {}
    for shift in (0, 6, 12):
        torch.manual_seed(0)  # the same assistant each time
        distiller = compressor(
            "scalekd",
            *SMALL,
            "compressor.teacher_scale=1",
            "compressor.output.bbox_loss=l2",
            f"compressor.perturb_px={shift}",
        ).build_distiller(family_view(student), family_view(teacher))
        terms[shift] = {
            k: v.item()
            for k, v in distiller.losses(distillation_batch(student, teacher, distiller, batch_of(seed=3))).items()
        }
    assert terms[0]["loss_cls"] == terms[6]["loss_cls"] == terms[12]["loss_cls"]
    assert terms[0]["loss_feat"] == terms[12]["loss_feat"]
    assert len({terms[s]["loss_bbox"] for s in (0, 6, 12)}) == 3


# ---------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("scalekd", "compressor.csa.attention=cross", "compressor.csa.attention"),
        ("scalekd", "compressor.csa.residual=both", "compressor.csa.residual"),
        ("scalekd", "compressor.csa.enabled=maybe", "compressor.csa.enabled"),
        ("scalekd", "compressor.sdf.enabled=2", "compressor.sdf.enabled"),
        ("od2017", "compressor.output.bbox_loss=l1", "compressor.output.bbox_loss"),
        ("scalekd", "compressor.output.box_units=px", "compressor.output.box_units"),
    ],
)
def test_a_switch_set_to_something_it_cannot_mean_is_refused(name, override, key):
    with pytest.raises(ConfigError, match=key):
        compressor(name, override)


def sweep(preset: str) -> dict[str, str]:
    """What `compress.py experiment=<preset>` sweeps: its params merged over those of the preset it extends."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        cfg = compose(config_name="compress", overrides=[f"experiment={preset}"], return_hydra_config=True)
    return dict(cfg.hydra.sweeper.params)


def test_scalekd_sod_compares_five_arms_over_three_seeds_on_the_teachers_native_pixels():
    assert sweep("scalekd_sod") == {"seed": "0,1,2", "arm": "student,finetune,fitnet,od2017,scalekd"}
    arms = {arm: compose_config("compress", ["experiment=scalekd_sod", f"arm={arm}"]) for arm in ARMS}
    assert {arm: cfg.compressor.name for arm, cfg in arms.items()} == {
        "student": "none", "finetune": "finetune", "fitnet": "fitnet", "od2017": "od2017", "scalekd": "scalekd"
    }  # fmt: skip
    trained_on = {(cfg.compressor.epochs, cfg.compressor.lr) for arm, cfg in arms.items() if arm != "student"}
    assert trained_on == {(8, arms["student"].optimizer.optimizer.lr)}  # the same extra epochs and rate in every arm
    for arm in ("fitnet", "od2017", "scalekd"):
        distiller = build(arms[arm].compressor)
        assert distiller.options.student_start == "input" and distiller.native_teacher
        assert distiller.teacher_scale == 2.0 and arms[arm].teacher.name == "yolov8n"
    dataset = arms["scalekd"].dataset
    assert (dataset.image_size, dataset.render_scale, dataset.evaluator.size_scale) == (128, 2, 2)


def test_the_table_presets_compose_with_the_papers_settings():
    table1 = build(compose_config("compress", ["experiment=scalekd_table1"]).compressor)
    assert (table1.teacher_scale, table1.output.bbox_loss) == (1.0, "l2")
    assert sweep("scalekd_table1") == {"seed": "0,1,2", "arm": "od2017", "compressor.perturb_px": "0,6,12"}
    assert sweep("scalekd_table5") == {"seed": "0,1,2", "arm": "scalekd", "compressor.teacher_scale": "1,2"}
    for variant, (enabled, attention) in {
        "none": (False, "msc"),
        "plain": (True, "plain"),
        "msc": (True, "msc"),
    }.items():
        table6 = build(compose_config("compress", ["experiment=scalekd_table6", f"csa={variant}"]).compressor)
        csa = table6.options.csa
        assert (csa.enabled, csa.attention, csa.residual) == (enabled, attention, "none")
        assert table6.native_teacher and table6.options.student_start == "input"
    assert sweep("scalekd_table6") == {"seed": "0,1,2", "arm": "scalekd", "csa": "none,plain,msc"}
    table7 = build(compose_config("compress", ["experiment=scalekd_table7"]).compressor)
    assert table7.native_teacher and table7.options.student_start == "input"
    assert sweep("scalekd_table7") == {"seed": "0,1,2", "arm": "scalekd", "compressor.sdf.weight_sharing": "true,false"}
