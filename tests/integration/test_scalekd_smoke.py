"""compressor=scalekd given a context: the high-resolution teacher and where it trains, and the smoke_scalekd run
in-process, every term logged every step (tests/unit/test_scalekd.py: its parts; tests/e2e/test_scalekd_cli.py:
compress.py, slow)."""

from __future__ import annotations

import csv
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from edgecomp.compress.context import RunSpec
from edgecomp.config import build, resolved_config
from edgecomp.distill.csa import CrossScaleAssistant
from edgecomp.distill.high_resolution import UpsampledInputDetector, high_resolution_config, load_teacher
from edgecomp.distill.sdf import ScaleDecoupledFeatureDistillation
from edgecomp.errors import ConfigError
from edgecomp.lit.training import Training
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from tests.conftest import compose_config
from tests.helpers.distillation import targets_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SCALEKD = ["experiment=smoke_scalekd", "logger=none"]


def test_the_high_resolution_teacher_trains_on_upsampled_images_and_its_weights_load_into_the_plain_teacher(
    tmp_path, compression_context_for
):
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

    _, context = compression_context_for(*SCALEKD, "teacher=yolov8n", data=False)
    upsampled = build(compose_config("compress", [*SCALEKD, "compressor.teacher_input=upsampled"]).compressor)
    teacher = upsampled.teacher_training(context)
    assert teacher.config["model"]["name"] == "yolov8n_x2" and teacher.config["model"]["detector"]["input_size"] == 256
    assert teacher.run_dir != context.teacher_training().run_dir  # not the plain teacher's training run
    plain = build(compose_config("compress", [*SCALEKD, "compressor.teacher_scale=1"]).compressor)
    assert plain.teacher_training(context).run_dir == context.teacher_training().run_dir


def test_the_native_teacher_trains_as_train_py_trains_the_teacher_at_its_resolution(
    tmp_path, data_dir, compression_context_for
):
    """teacher_input=native (the default): the teacher is the plain detector built for 2 x the input, trained on the
    stored images letterboxed to that size: the run folder `train.py model=<teacher> model.input_size=256
    dataset.datamodule.image_size=256` trains into, not the upsampled teacher's nor the plain one's."""
    cfg, context = compression_context_for(*SCALEKD, "teacher=yolov8n")
    compressor = build(cfg.compressor)
    teacher = compressor.teacher_training(context)
    assert teacher.config["model"]["name"] == "yolov8n" and teacher.config["model"]["input_size"] == 256
    assert teacher.datamodule.image_size == 256 and context.datamodule.image_size == 128
    overrides = ["model=yolov8n", "model.input_size=256", "dataset.datamodule.image_size=256"]
    paths = [f"paths.results={tmp_path}", f"paths.data={data_dir}"]
    trained_by_train_py = compose_config("train", [*SCALEKD, *paths, *overrides])
    assert teacher.run_dir == Training(trained_by_train_py, resolved_config(trained_by_train_py), None, None).run_dir
    assert teacher.run_dir != context.teacher_training().run_dir
    upsampled = build(compose_config("compress", [*SCALEKD, "compressor.teacher_input=upsampled"]).compressor)
    assert teacher.run_dir != upsampled.teacher_training(context).run_dir
    images, targets = next(iter(teacher.datamodule.train_dataloader()))
    assert images.shape[-2:] == (256, 256)


def test_smoke_scalekd_logs_every_term_every_step_and_deploys_the_baselines_architecture(
    tmp_path, compression_context_for
):
    """The smoke run in-process, its teacher a random YOLOv8s checkpoint (the teacher's training is train.py's, tested
    there): the distilled student, its record fields and the CSV log of every step."""
    teacher_file = tmp_path / "teacher.pt"
    cfg, context = compression_context_for(
        "experiment=smoke_scalekd",
        "logger=csv",
        f"compressor.teacher_checkpoint={teacher_file}",
        "trainer.enable_progress_bar=false",
    )
    torch.manual_seed(123)
    torch.save(build(cfg.teacher).state_dict(), teacher_file)
    compressor = build(cfg.compressor)
    compressor.check(RunSpec.from_config(cfg))
    compressor.prepare(context)
    baseline = build(cfg.model)
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


@pytest.mark.parametrize(
    ("student_start", "warm_start", "starts_from"),
    [(None, False, "initial"), (None, True, "input"), ("input", False, "input"), ("initial", True, "initial")],
)
def test_the_student_starts_where_student_start_says_and_by_default_where_the_context_says(
    compression_context_for, student_start, warm_start, starts_from
):
    """initial: the very weights the baseline started from; input: the model the compressor is given (the trained
    baseline in a run of its own: what arm=scalekd continues from); null: initial, or input in a recipe's stage."""
    cfg, context = compression_context_for(
        *SCALEKD, f"compressor.student_start={'null' if student_start is None else student_start}", data=False
    )
    context = dataclasses.replace(context, warm_start=warm_start)
    compressor = build(cfg.compressor)
    trained = build(cfg.model)
    student = compressor.student(trained, context)
    assert compressor.student_start == starts_from and compressor.results()["student_start"] == starts_from
    if starts_from == "input":
        assert student is trained
    else:
        initial = context.training.initial_model().state_dict()
        assert student is not trained and all(torch.equal(v, initial[k]) for k, v in student.state_dict().items())


def test_student_start_is_refused_where_the_student_is_a_new_network_of_another_architecture():
    cfg = compose_config(
        "compress", ["experiment=smoke", "compressor=kd_into_mobilenetv3_small", "compressor.student_start=input"]
    )
    with pytest.raises(ConfigError, match="compressor.student_start=input has no meaning with compressor.student"):
        build(cfg.compressor).check(RunSpec.from_config(cfg))
