"""compressor=scalekd: the SDF (shapes, weight sharing, no collapse), the CSA (shapes at every level, the rates, where
its gradients come from and go), the pairing of teacher and student levels, the family views the output losses rely
on, the assistant's update before the student's, the configs refused (tests/integration/test_scalekd_smoke.py: the
smoke_scalekd run in-process; tests/e2e/test_scalekd_cli.py: compress.py, slow)."""

from __future__ import annotations

import copy
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.distill.alignment import LevelPair, aligned_pyramid, pair_levels, teacher_input, to_grid
from edgecomp.distill.csa import CrossScaleAssistant, MultiScaleCrossAttention
from edgecomp.distill.families import family_view
from edgecomp.distill.output_losses import OutputDistillationSettings
from edgecomp.distill.scalekd_distiller import CSASettings, ScaleKD, SDFSettings, batchnorm_statistics_held
from edgecomp.distill.sdf import ScaleDecoupledEmbedding, ScaleDecoupledFeatureDistillation
from edgecomp.errors import ConfigError
from edgecomp.lit.detection_distillation_module import DetectionDistillationModule, LossWeights
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from tests.conftest import compose_config
from tests.helpers.distillation import SIZE, detector, distillation_batch, images, targets_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- SDF


def test_sdf_embeds_three_branches_per_position_and_pools_a_finer_teacher_to_the_students_grid():
    torch.manual_seed(0)
    sdf = ScaleDecoupledFeatureDistillation(student_channels=6, teacher_channels=10, embed_channels=5)
    student, teacher = torch.randn(2, 6, 4, 4), torch.randn(2, 10, 8, 8)  # a 2x teacher: twice as fine
    assert sdf.embed_student(student).shape == (2, 3 * 5, 4, 4)
    assert sdf.embed_teacher(teacher, (4, 4)).shape == (2, 3 * 5, 4, 4)
    loss = sdf(student, teacher)
    expected = (sdf.embed_student(student) - sdf.embed_teacher(F.adaptive_avg_pool2d(teacher, 4), (4, 4))).pow(2)
    assert loss.dim() == 0 and loss.item() == pytest.approx(expected.sum().item() / (2 * 16), rel=1e-5)


def test_weight_sharing_uses_one_set_of_weights_at_three_dilations_and_every_branch_trains_it():
    torch.manual_seed(0)
    shared = ScaleDecoupledEmbedding(channels=8, embed_channels=4, weight_sharing=True)
    separate = ScaleDecoupledEmbedding(channels=8, embed_channels=4, weight_sharing=False)
    bottleneck = sum(p.numel() for p in shared.bottlenecks[0].parameters())
    mlps = sum(p.numel() for p in shared.mlps.parameters())
    assert len(shared.bottlenecks) == 1 and len(separate.bottlenecks) == 3
    assert sum(p.numel() for p in shared.parameters()) == bottleneck + mlps
    assert sum(p.numel() for p in separate.parameters()) == 3 * bottleneck + mlps

    x = torch.randn(2, 8, 9, 9)
    outputs = shared.branches(x)
    # One weight, three dilations: the branches see different neighbourhoods, so their outputs differ.
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])
    for branch, output in enumerate(outputs):
        shared.zero_grad()
        output.pow(2).sum().backward(retain_graph=True)
        gradient = shared.bottlenecks[0].spatial.weight.grad
        assert gradient is not None and gradient.abs().sum() > 0, f"branch {branch} does not train the shared weights"
    # Without sharing, a branch trains its own bottleneck only.
    separate.zero_grad()
    separate.branches(x)[1].pow(2).sum().backward()
    grads = [b.spatial.weight.grad for b in separate.bottlenecks]
    assert grads[0] is None and grads[2] is None and grads[1].abs().sum() > 0


def test_a_constant_student_side_cannot_drive_l_feat_to_zero():
    """The teacher side is a fixed function with no trainable parameter; the best a student side that ignores its
    input can do is output the teacher embeddings' mean (per position), which leaves their variance over the batch.
    Trained on an uninformative (constant) input, the whole student side (adapter, bottleneck, MLPs) stays above that
    floor; given an informative input, the same training goes well below it."""
    torch.manual_seed(0)
    sdf = ScaleDecoupledFeatureDistillation(student_channels=8, teacher_channels=8, embed_channels=8)
    assert not any(p.requires_grad for p in sdf.teacher_embedding.parameters())
    teacher = torch.randn(6, 8, 4, 4)
    embedded = sdf.embed_teacher(teacher, (4, 4))
    floor = (embedded - embedded.mean(dim=0, keepdim=True)).pow(2).sum().item() / (6 * 16)
    assert floor > 0.1

    def train(student_input: torch.Tensor) -> float:
        optimizer = torch.optim.Adam([p for p in sdf.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(150):
            optimizer.zero_grad()
            loss = sdf(student_input, teacher)
            loss.backward()
            optimizer.step()
        return sdf(student_input, teacher).item()

    frozen_before = [p.clone() for p in sdf.teacher_embedding.parameters()]
    constant_loss = train(torch.ones(6, 8, 4, 4))
    assert constant_loss >= floor * (1 - 1e-4)  # the floor holds, however hard the student side trains
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, sdf.teacher_embedding.parameters(), strict=True))
    assert train(teacher.clone()) < 0.5 * floor  # an informative student side gets below it


# ---------------------------------------------------------------------------------------------------- CSA


def test_each_head_group_attends_to_the_teachers_tokens_pooled_at_its_rate():
    attention = MultiScaleCrossAttention(16, 24, 16, dim=32, heads=8, rates=(1, 2, 4, 8))
    key_value = torch.randn(2, 24, 10, 12)
    groups = attention.keys_and_values(key_value)
    assert [k.shape for k, _ in groups] == [
        (2, 2, math.ceil(10 / r) * math.ceil(12 / r), 4) for r in (1, 2, 4, 8)
    ]  # 120, 30, 9, 2 tokens; 2 heads per group, head dimension 32 / 8
    assert all(k.shape == v.shape for k, v in groups)
    plain = MultiScaleCrossAttention(16, 24, 16, dim=32, heads=8, rates=(1, 1, 1, 1))
    assert {k.shape[2] for k, _ in plain.keys_and_values(key_value)} == {120}
    # The query's grid decides the output's, whatever the key/value grid.
    assert attention(torch.randn(2, 16, 5, 6), key_value).shape == (2, 16, 5, 6)


@pytest.mark.parametrize("query_from", ["student", "teacher"])
def test_the_assistant_outputs_each_student_level_in_the_students_channels_and_grid(query_from):
    student_channels, teacher_channels = [16, 32, 64], [32, 64, 128]  # as YOLOv8n and YOLOv8s
    assistant = CrossScaleAssistant(student_channels, teacher_channels, dim=32, heads=4, query_from=query_from)
    student = [torch.randn(2, c, s, s) for c, s in zip(student_channels, (16, 8, 4), strict=True)]
    teacher = [torch.randn(2, c, s, s) for c, s in zip(teacher_channels, (16, 8, 4), strict=True)]
    outputs = assistant(student, teacher)
    assert [o.shape for o in outputs] == [s.shape for s in student]


# ---------------------------------------------------------------------------------------------------- alignment


def test_levels_pair_by_effective_stride_and_the_teachers_input_is_upsampled():
    assert pair_levels((8, 16, 32), (8, 16, 32), 1.0) == [LevelPair(0, True), LevelPair(1, True), LevelPair(2, True)]
    # A 2x teacher's P4 is the student's P3, its P5 the student's P4; the student's P5 gets the nearest, inexactly.
    assert pair_levels((8, 16, 32), (8, 16, 32), 2.0) == [LevelPair(1, True), LevelPair(2, True), LevelPair(2, False)]
    assert [p.teacher for p in pair_levels((8, 16, 32, 64, 128), (8, 16, 32, 64, 128), 2.0)] == [1, 2, 3, 4, 4]
    batch = images(2)
    assert teacher_input(batch, 1.0) is batch and teacher_input(batch, 2.0).shape == (2, 3, 2 * SIZE, 2 * SIZE)
    fine = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(to_grid(fine, (2, 2)), F.avg_pool2d(fine, 2))  # a finer grid is averaged, cell by cell
    pyramid = aligned_pyramid([torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4)], [torch.zeros(1, 2, 4, 4)] * 2,
                              [LevelPair(1, True), LevelPair(1, False)])  # fmt: skip
    assert [tuple(p.shape) for p in pyramid] == [(1, 4, 4, 4), (1, 4, 4, 4)]


@pytest.mark.parametrize("wrong", [None, "size"])
def test_a_native_teacher_sees_the_batchs_own_teacher_images_and_an_upsampled_one_the_students_upsampled(
    yolo_pair, wrong
):
    """teacher_input=native: the teacher's features are of the teacher images the batch carries (letterboxed from the
    stored images at its resolution); upsampled: of the student's images upsampled bilinearly, as before native
    existed, whatever the batch carries; a native module given no teacher images (or ones of another size) says
    which datamodule it needs."""
    student, teacher, distiller = yolo_pair
    batch, targets = images(2), targets_for(2)
    own = torch.rand(2, 3, 2 * SIZE, 2 * SIZE, generator=torch.Generator().manual_seed(7))

    def teacher_pyramid(teacher_input: str, *teacher_images: torch.Tensor) -> list[torch.Tensor]:
        module = DetectionDistillationModule(
            student, teacher, distiller, LossWeights(), partial(torch.optim.SGD, lr=0.01), teacher_scale=2.0,
            teacher_input=teacher_input,
        )  # fmt: skip
        return module.distillation_batch(batch, targets, *teacher_images).teacher.pyramid

    def features_of(pixels: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return teacher.features(pixels).pyramid

    upsampled = F.interpolate(batch, size=(2 * SIZE, 2 * SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    for got, expected in [
        (teacher_pyramid("native", own), features_of(own)),
        (teacher_pyramid("upsampled"), features_of(upsampled)),
        (teacher_pyramid("upsampled", own), features_of(upsampled)),
    ]:
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    assert not torch.allclose(features_of(own)[0], features_of(upsampled)[0])  # the two inputs differ
    given = () if wrong is None else (torch.rand(2, 3, SIZE, SIZE),)
    with pytest.raises(ConfigError, match=r"teacher_input=native needs .* 128 px images .*with_teacher_scale\(2\)"):
        teacher_pyramid("native", *given)
    with pytest.raises(ConfigError, match="teacher_input must be one of"):
        teacher_pyramid("bicubic")


# ---------------------------------------------------------------------------------------------------- family views


def build_detector(family: type, **settings):
    return detector(family, 0, **settings).eval()  # eval: BatchNorm leaves its statistics alone in these checks


@pytest.mark.parametrize("family", [YOLOv8Adapter, RetinaNetAdapter, FCOSAdapter, FasterRCNNAdapter])
def test_the_family_loss_on_given_head_outputs_is_the_adapters_own_loss(family):
    detector = build_detector(family)
    view, batch, targets = family_view(detector), images(2), targets_for(2)
    torch.manual_seed(1)
    expected = detector.loss(batch, targets)
    features = detector.features(batch)
    torch.manual_seed(1)
    if family is FasterRCNNAdapter:
        # torchvision's transform draws one random size per image in training mode (a single choice here) before
        # the RPN and RoI samplers draw theirs: the same draws keep the samplers' choices the same.
        [torch.empty(1).uniform_(0.0, 1.0) for _ in range(2)]
    step = view.detection_step(features.pyramid, detector.head(features.pyramid), targets)
    assert step.losses.keys() == expected.keys()
    for name, value in expected.items():
        assert step.losses[name].item() == pytest.approx(value.item(), rel=1e-5), name
    dense = step.targets["dense"]
    assert [len(p) for p in dense.positives] == [len(b) for b in step.outputs["dense"].boxes]
    assert int(sum(p.sum() for p in dense.positives)) > 0  # the first image's objects have positives


def test_a_box_space_shift_per_pixel_moves_the_decoded_box_by_that_many_pixels():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.tensor([[0.0, 0.0, 32.0, 16.0], [10.0, 20.0, 74.0, 52.0]])
    deltas = torch.randn(2, 4, generator=generator) * 0.2
    retinanet = family_view(build_detector(RetinaNetAdapter))
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    moved = coder.decode_single(deltas + 6 * retinanet.shift_per_pixel(anchors), anchors)
    assert torch.allclose(moved, coder.decode_single(deltas, anchors) + 6, atol=1e-4)
    fcos, linear = family_view(build_detector(FCOSAdapter)), BoxLinearCoder(normalize_by_size=True)
    distances = torch.rand(2, 4, generator=generator) * 3
    moved = linear.decode(distances + 12 * fcos.shift_per_pixel(anchors), anchors)
    assert torch.allclose(moved, linear.decode(distances, anchors) + 12, atol=1e-4)


# ---------------------------------------------------------------------------------------------------- the distiller


@pytest.fixture(scope="module")
def yolo_pair():
    torch.manual_seed(0)
    student, teacher = YOLOv8Adapter(3, SIZE, "n"), YOLOv8Adapter(3, SIZE, "s").eval().requires_grad_(False)
    distiller = ScaleKD(family_view(student), family_view(teacher), 2.0, SDFSettings(embed_channels=16),
                        CSASettings(dim=32), OutputDistillationSettings())  # fmt: skip
    return student, teacher, distiller


def test_the_assistants_detection_loss_trains_the_csa_and_reaches_neither_teacher_nor_student_features(yolo_pair):
    student, teacher, distiller = yolo_pair
    student.zero_grad()
    distiller.zero_grad()
    batch = distillation_batch(student, teacher, distiller)
    step = distiller.assistant_step(batch)
    assert set(step.losses) == {"box", "cls", "dfl"}
    torch.stack(list(step.losses.values())).sum().backward()
    csa = list(distiller.csa.parameters())
    assert all(p.grad is not None for p in csa) and sum(float(p.grad.abs().sum()) for p in csa) > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in family_view(student).backbone.parameters())  # the CSA detaches its inputs
    assert any(p.grad is not None for p in student.detect.parameters())  # the shared head (the update discards it)
    assert all(p.grad is None for p in distiller.sdf.parameters())


def test_the_students_distillation_terms_train_the_student_and_the_sdf_but_not_the_assistant(yolo_pair):
    student, teacher, distiller = yolo_pair
    student.zero_grad()
    distiller.zero_grad()
    terms = distiller.losses(distillation_batch(student, teacher, distiller))
    assert set(terms) == {"loss_feat", "loss_cls", "loss_bbox"} and all(torch.isfinite(v) for v in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    assert all(p.grad is None for p in distiller.csa.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in family_view(student).backbone.parameters())
    assert distiller.sdf.adapter.weight.grad is not None


@pytest.mark.parametrize("family", [YOLOv8Adapter, RetinaNetAdapter])
def test_a_fastnas_pruned_student_with_odd_channel_counts_is_distilled_from_the_unpruned_model(family):
    """A recipe's recovery stage: the student is the FastNAS subnet (its inner channels cut to 30 %, counts that are
    no multiple of anything), the teacher the unpruned network at the same resolution."""
    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.utils import sample

    from edgecomp.compress.pruning.fastnas import FastNASPruning
    from edgecomp.models.modelopt_artifact import ModelOptView

    teacher = build_detector(family).requires_grad_(False)
    view = ModelOptView(copy.deepcopy(teacher).requires_grad_(True).train()).eval()
    pruner = FastNASPruning("fastnas", flops="50%", channel_divisor=1, channel_ratios=[0.3, 1.0], epochs=0)
    pruner._convert(view, family.__name__)
    sample(view, min)
    mtn.export(view)
    student = view.model.train()
    widths = {m.out_channels for m in student.modules() if isinstance(m, torch.nn.Conv2d)}
    assert widths - {m.out_channels for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)}  # new widths
    assert any(width % 2 for width in widths)
    distiller = ScaleKD(family_view(student), family_view(teacher), 1.0, SDFSettings(embed_channels=16),
                        CSASettings(dim=32), OutputDistillationSettings())  # fmt: skip
    batch = distillation_batch(student, teacher, distiller)
    terms = distiller.losses(batch)
    assert set(terms) == {"loss_feat", "loss_cls", "loss_bbox"} and all(torch.isfinite(v) for v in terms.values())
    (torch.stack(list(terms.values())).sum() + sum(batch.student_step.losses.values())).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in family_view(student).backbone.parameters())
    assistant = distiller.assistant_step(distillation_batch(student, teacher, distiller))
    assert all(torch.isfinite(v) for v in assistant.losses.values())


def test_the_students_head_on_the_assistants_features_leaves_its_batchnorm_statistics_alone(yolo_pair):
    student = yolo_pair[0].train()
    norms = [m for m in student.detect.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms]
    features = student.features(images(2)).pyramid
    with batchnorm_statistics_held(student):
        student.head([f * 3 + 1 for f in features])
    after = [(m.running_mean, m.running_var, int(m.num_batches_tracked)) for m in norms]
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2] for a, b in zip(before, after, strict=True)
    )
    assert norms[0].momentum == 0.03  # Ultralytics' momentum, restored
    student.head(features)
    assert not torch.equal(norms[0].running_mean, before[0][0])  # outside the context they do move


# ---------------------------------------------------------------------------------------------------- the config


SCALEKD = ["experiment=smoke_scalekd", "logger=none"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([*SCALEKD, "teacher=fcos", "model=retinanet"], "one family: teacher=fcos_resnet18 is a FCOSAdapter"),
        ([*SCALEKD, "~teacher"], "compressor=scalekd needs a teacher"),
        (
            [*SCALEKD, "compressor.teacher_scale=1.125"],
            "compressor.teacher_scale=1.125 gives the teacher a 144 px input",
        ),
        ([*SCALEKD, "teacher.num_classes=7"], "teacher.num_classes=7 but model.num_classes=4"),
        (["experiment=smoke", "compressor=scalekd", "teacher=mobilenetv3_large_100"], "distils a detector; dataset"),
        ([*SCALEKD, "teacher=mobilenetv3_large_100"], "teacher=mobilenetv3_large_100 is not a detector"),
    ],
)
def test_a_config_scalekd_cannot_work_with_is_refused_before_any_work(overrides, message):
    cfg = compose_config("compress", overrides)
    with pytest.raises(ConfigError, match=message):
        build(cfg.compressor).check(RunSpec.from_config(cfg))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("compressor.csa.heads=3", "compressor.csa.heads=3"),
        ("compressor.csa.dim=102", "compressor.csa.dim=102"),
        ("compressor.csa.query_from=both", "compressor.csa.query_from"),
        ("compressor.csa.rates=[1,0]", "compressor.csa.rates"),
        ("compressor.sdf.embed_channels=0", "compressor.sdf.embed_channels"),
        ("compressor.alpha=-1", "compressor.alpha"),
        ("compressor.schedule.student_warmup=2.5", "compressor.schedule.student_warmup"),
        ("compressor.perturb_px=-6", "compressor.perturb_px"),
        ("compressor.output.temperature=0", "compressor.output.temperature"),
    ],
)
def test_settings_out_of_range_are_refused_when_the_compressor_is_built(override, key):
    cfg = compose_config("compress", [*SCALEKD, override])
    with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
        build(cfg.compressor)


def test_the_ablations_and_presets_compose():
    plain = build(compose_config("compress", [*SCALEKD, "compressor.csa.multi_scale=false"]).compressor)
    assert plain.options.csa.effective_rates == (1, 1, 1, 1) and plain.options.csa.rates == (1, 2, 4, 8)
    assert (
        build(
            compose_config("compress", [*SCALEKD, "compressor.sdf.weight_sharing=false"]).compressor
        ).options.sdf.weight_sharing
        is False
    )
    two_stage = build(compose_config("compress", [*SCALEKD, "compressor=scalekd_two_stage"]).compressor)
    assert (two_stage.weights.alpha, two_stage.weights.beta, two_stage.weights.gamma) == (0.07, 0.5, 0.2)
    one_stage = build(compose_config("compress", SCALEKD).compressor)
    assert (one_stage.weights.alpha, one_stage.weights.beta, one_stage.weights.gamma) == (0.01, 0.2, 0.05)
    assert one_stage.teacher_scale == 2.0
