"""compressor=scalekd: the SDF (shapes, weight sharing, no collapse), the CSA (shapes at every level, the rates, where
its gradients come from and go), the pairing of teacher and student levels, the family views the output losses rely
on, the assistant's update before the student's, and the smoke_scalekd run end to end."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder

from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.config import build, resolved_config
from edgecomp.distill.alignment import LevelPair, aligned_pyramid, pair_levels, teacher_input, to_grid
from edgecomp.distill.csa import CrossScaleAssistant, MultiScaleCrossAttention
from edgecomp.distill.distiller import DistillationBatch
from edgecomp.distill.families import family_view
from edgecomp.distill.high_resolution import UpsampledInputDetector, high_resolution_config, load_teacher
from edgecomp.distill.output_losses import OutputDistillationSettings
from edgecomp.distill.scalekd_distiller import CSASettings, ScaleKD, SDFSettings, batchnorm_statistics_held
from edgecomp.distill.sdf import ScaleDecoupledEmbedding, ScaleDecoupledFeatureDistillation
from edgecomp.errors import ConfigError
from edgecomp.models.checkpoint import load_state_dict
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from edgecomp.pipelines.common import Job, start_job
from edgecomp.pipelines.compress import compression_context
from tests.conftest import compose_config, read_jsonl, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64  # every family's strides divide it; small enough for a step in well under a second


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


# ---------------------------------------------------------------------------------------------------- family views


def build_detector(family: type, **settings):
    torch.manual_seed(0)
    if family is FasterRCNNAdapter:
        settings = {"proposals_train": 100, "rois_per_image": 32, **settings}
    return family(3, SIZE, **settings).eval()  # eval: BatchNorm leaves its statistics alone in these checks


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


def test_the_high_resolution_teacher_trains_on_upsampled_images_and_its_weights_load_into_the_plain_teacher(tmp_path):
    cfg = compose_config("compress", [*SCALEKD, "teacher=yolov8n"])  # the small teacher: the same code, cheaper
    torch.manual_seed(0)
    wrapper = build(high_resolution_config(cfg.teacher, 2.0))
    assert isinstance(wrapper, UpsampledInputDetector) and wrapper.name == "yolov8n_x2"
    assert (wrapper.input_size, wrapper.detector.input_size) == (128, 256)
    wrapper.eval()
    batch, targets = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)), targets_for(1)
    upsampled = F.interpolate(batch, size=(256, 256), mode="bilinear", align_corners=False)
    expected = wrapper.detector.loss(upsampled, [{**t, "boxes": 2 * t["boxes"]} for t in targets])
    assert {k: v.item() for k, v in wrapper.loss(batch, targets).items()} == pytest.approx(
        {k: v.item() for k, v in expected.items()}
    )
    wrapper.detector.max_detections = 5
    assert torch.allclose(wrapper.predict(batch)[0]["boxes"], wrapper.detector.predict(upsampled)[0]["boxes"] / 2)

    torch.save(wrapper.state_dict(), tmp_path / "wrapped.pt")  # what the teacher's training run writes
    torch.save(wrapper.detector.state_dict(), tmp_path / "plain.pt")  # a teacher trained elsewhere
    for name in ("wrapped.pt", "plain.pt"):
        teacher = load_teacher(cfg.teacher, tmp_path / name)
        assert type(teacher) is YOLOv8Adapter
        assert all(torch.equal(v, wrapper.detector.state_dict()[k]) for k, v in teacher.state_dict().items())

    # A context with what teacher_training reads (the run's training, the teacher's config): a job that measures no
    # model has no data, device or evaluator, which compression_context() refuses to leave out
    job = Job(cfg, resolved_config(cfg), logger=None)
    context = CompressionContext(
        task=cfg.task,
        model_config=cfg.model,
        teacher_config=cfg.teacher,
        datamodule=None,
        device=None,
        evaluator=None,
        training=job.training,
        work_dir=job.artifacts_dir,
    )
    compressor = build(cfg.compressor)
    teacher = compressor.teacher_training(context)
    assert teacher.config["model"]["name"] == "yolov8n_x2" and teacher.config["model"]["detector"]["input_size"] == 256
    assert teacher.run_dir != context.teacher_training().run_dir  # not the plain teacher's training run
    plain = build(compose_config("compress", [*SCALEKD, "compressor.teacher_scale=1"]).compressor)
    assert plain.teacher_training(context).run_dir == context.teacher_training().run_dir


# ---------------------------------------------------------------------------------------------------- the distiller


@pytest.fixture(scope="module")
def yolo_pair():
    torch.manual_seed(0)
    student, teacher = YOLOv8Adapter(3, SIZE, "n"), YOLOv8Adapter(3, SIZE, "s").eval().requires_grad_(False)
    distiller = ScaleKD(family_view(student), family_view(teacher), 2.0, SDFSettings(embed_channels=16),
                        CSASettings(dim=32), OutputDistillationSettings())  # fmt: skip
    return student, teacher, distiller


def distillation_batch(student, teacher, distiller, count: int = 2) -> DistillationBatch:
    batch, targets = images(count), targets_for(count)
    with torch.no_grad():
        teacher_features = teacher.features(teacher_input(batch, distiller.teacher_scale))
    features = student.features(batch)
    head = student.head(features.pyramid)
    step = distiller.student_view.detection_step(features.pyramid, head, targets)
    return DistillationBatch(batch, targets, features, head, step, teacher_features)


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


# ---------------------------------------------------------------------------------------------------- smoke_scalekd


def test_smoke_scalekd_logs_every_term_every_step_and_deploys_the_baselines_architecture(tmp_path, data_dir):
    """The smoke run in-process, its teacher a random YOLOv8s checkpoint (the teacher's training is train.py's, tested
    there): the distilled student, its record fields and the CSV log of every step."""
    teacher_file = tmp_path / "teacher.pt"
    cfg = compose_config(
        "compress", ["experiment=smoke_scalekd", "logger=csv", f"paths.results={tmp_path}", f"paths.data={data_dir}",
                     f"compressor.teacher_checkpoint={teacher_file}", "trainer.enable_progress_bar=false"],
    )  # fmt: skip
    torch.manual_seed(123)
    torch.save(build(cfg.teacher).state_dict(), teacher_file)
    compressor = build(cfg.compressor)
    compressor.check(RunSpec.from_config(cfg))
    job = start_job(cfg)
    context = compression_context(job)
    compressor.prepare(context)
    baseline = job.new_model()
    student = compressor.compress(baseline, context)

    fields = compressor.record_fields()["distill"]
    assert fields["deployed_params_equal_baseline"] and fields["deployed_architecture_equal_baseline"]
    assert (
        fields["deployed_params"]
        == sum(p.numel() for p in baseline.parameters())
        == sum(p.numel() for p in student.parameters())
    )
    assert fields["distiller_params"] > 0
    assert type(student) is type(baseline) and not any(
        isinstance(m, (CrossScaleAssistant, ScaleDecoupledFeatureDistillation)) for m in student.modules()
    )
    for term in ("loss_feat", "loss_cls", "loss_bbox", "loss_det", "loss_assistant"):
        assert math.isfinite(fields[term]["first"]) and math.isfinite(fields[term]["last"]), term
    assert fields["loss_det"]["first"] > 0 and fields["loss_feat"]["first"] > 0

    (metrics,) = (tmp_path / "csv").rglob("metrics.csv")
    with metrics.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
    steps = 2 * 2  # 2 epochs of 16 images in batches of 8
    assert len(rows) == steps
    for term in ("loss_feat", "loss_cls", "loss_bbox", "loss_det", "loss_assistant", "det_box", "det_cls", "det_dfl"):
        assert all(math.isfinite(float(row[f"train/{term}"])) for row in rows), term
    # The warm-up step (compressor.schedule.student_warmup=1): the student's loss is L_det alone, then all of eq. 7.
    assert [float(row["train/distilling"]) for row in rows] == [0.0, 1.0, 1.0, 1.0]
    assert float(rows[0]["train/loss"]) == pytest.approx(float(rows[0]["train/loss_det"]), rel=1e-5)
    later = rows[1]
    weighted = sum(
        w * float(later[f"train/{t}"]) for w, t in ((0.01, "loss_feat"), (0.2, "loss_cls"), (0.05, "loss_bbox"))
    )
    assert float(later["train/loss"]) == pytest.approx(float(later["train/loss_det"]) + weighted, rel=1e-4)
    assert compressor.results()["teacher_checkpoint"] == str(teacher_file)


@pytest.mark.slow
def test_compress_py_experiment_smoke_scalekd_end_to_end(tmp_path, data_dir):
    """`python compress.py experiment=smoke_scalekd` as a user runs it: baseline and teacher trained, the distilled
    student measured against the baseline, the record's distill field."""
    run_cli("compress.py", "experiment=smoke_scalekd", "logger=none", "trainer.enable_progress_bar=false",
            f"paths.results={tmp_path}", f"paths.data={data_dir}", timeout=900)  # fmt: skip
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["compressor"] == "scalekd" and record["model"] == "yolov8n"
    # The deployed file is the distilled student alone: the baseline's tensors (no CSA, no SDF, no teacher), trained
    # to other values.
    student, baseline = load_state_dict(record["checkpoint"]), load_state_dict(record["baseline"]["checkpoint"])
    assert {k: v.shape for k, v in student.items()} == {k: v.shape for k, v in baseline.items()}
    assert not all(torch.equal(v, baseline[k]) for k, v in student.items())
    assert record["distill"]["deployed_params_equal_baseline"] is True
    assert {"loss_feat", "loss_cls", "loss_bbox", "loss_det"} <= set(record["distill"])
    assert record["compression"]["teacher"] == "yolov8s" and record["compression"]["teacher_scale"] == 2.0
    assert Path(record["checkpoint"]).is_file()
