"""compressor=kd: the Hinton loss, the frozen teacher, the distillation on the smoke data, and compress.py end to end."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from edgecomp.compress.context import RunSpec
from edgecomp.config import build, resolved_config, run_id
from edgecomp.errors import ConfigError
from edgecomp.lit.hinton_distillation_module import HintonDistillationModule, hinton_loss
from edgecomp.models.checkpoint import load_state_dict
from edgecomp.pipelines.common import Job, start_job
from edgecomp.pipelines.compress import compression_context
from tests.conftest import compose_config, read_jsonl, run_cli

SMOKE_KD = ["experiment=smoke", "compressor=kd", "logger=none", "trainer.enable_progress_bar=false"]

# ---------------------------------------------------------------------------------------------------- the loss


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


# ---------------------------------------------------------------------------------------------------- the teacher


def tiny_classifier(seed: int) -> nn.Module:
    """BatchNorm and dropout: both behave differently in training mode, which is what the teacher must not be in."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )  # fmt: skip


class TeacherModeSpy(pl.Callback):
    def __init__(self) -> None:
        self.teacher_training: list[bool] = []
        self.student_training: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.teacher_training.append(pl_module.teacher.training)
        self.student_training.append(pl_module.student.training)


def test_the_teacher_gets_no_gradient_and_stays_in_eval_mode_while_the_student_trains():
    teacher, student = tiny_classifier(0), tiny_classifier(1)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}  # incl. BatchNorm running statistics
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    module = HintonDistillationModule(
        student,
        teacher,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        scheduler=None,
        temperature=4.0,
        alpha=0.5,
        num_classes=3,
    )
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 8, 8, generator=generator), torch.randint(0, 3, (32,), generator=generator))
    spy = TeacherModeSpy()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[spy],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no validation data, few batches, the teacher in eval mode: all on purpose
        trainer.fit(module, DataLoader(data, batch_size=8))

    assert len(spy.teacher_training) == 8 and not any(spy.teacher_training) and all(spy.student_training)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in teacher_before.items())
    assert not all(torch.equal(student.state_dict()[k], v) for k, v in student_before.items())
    assert len(module.epoch_losses) == 2 and all(math.isfinite(loss) for loss in module.epoch_losses)
    assert set(trainer.callback_metrics) >= {"train/loss", "train/loss_ce", "train/loss_kd"}


def test_a_diverging_student_stops_at_the_end_of_the_epoch():
    # A linear student at an absurd learning rate: its logits overflow to inf within the first epoch.
    module = HintonDistillationModule(
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)),
        tiny_classifier(0),
        optimizer=lambda params: torch.optim.SGD(params, lr=1e38),
        scheduler=None,
        temperature=4.0,
        alpha=0.5,
        num_classes=3,
    )
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 8, 8, generator=generator), torch.randint(0, 3, (32,), generator=generator))
    trainer = pl.Trainer(
        max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(data, batch_size=8))
    assert len(module.epoch_losses) == 1 and not math.isfinite(module.epoch_losses[0])


# ---------------------------------------------------------------------------------------------------- the config


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


def test_the_teacher_trains_into_the_run_folder_of_train_py_with_model_set_to_the_teacher():
    cfg = compose_config("compress", ["experiment=smoke", "compressor=kd", "teacher=mobilenetv3_large_100"])
    teacher = Job(cfg, resolved_config(cfg), logger=None).training.for_model("teacher")
    as_trained_by_train_py = compose_config("train", ["experiment=smoke", "model=mobilenetv3_large_100"])
    assert teacher.run_dir == Path(cfg.paths.runs) / run_id(resolved_config(as_trained_by_train_py))
    assert teacher.new_model().__class__.__name__ == "MobileNetV3" and teacher.model_name.endswith("large_100")
    assert cfg.model.name == "mobilenetv3_small_100"  # the job it came from is unchanged


# ---------------------------------------------------------------------------------------------------- distillation


def test_distillation_on_the_smoke_data_lowers_the_loss_from_the_baselines_initial_weights(
    tmp_path, data_dir, one_torch_thread
):
    teacher_file = tmp_path / "teacher.pt"
    teacher_cfg = compose_config("compress", ["experiment=smoke", "teacher=mobilenetv3_small_100"]).teacher
    torch.manual_seed(123)
    torch.save(build(teacher_cfg).state_dict(), teacher_file)  # any weights for the teacher's architecture
    cfg = compose_config(
        "compress",
        [
            *SMOKE_KD,
            "teacher=mobilenetv3_small_100",
            "compressor.epochs=2",
            f"compressor.teacher_checkpoint={teacher_file}",
            f"paths.results={tmp_path}",
            f"paths.data={data_dir}",
        ],
    )
    job = start_job(cfg)
    context = compression_context(job)
    compressor = build(cfg.compressor)
    compressor.check(RunSpec.from_config(cfg))
    configured = compressor.settings()
    compressor.prepare(context)

    # The student starts from the weights the from-scratch baseline starts from, whatever ran before.
    start = context.training.initial_model().state_dict()
    torch.randn(1000)
    assert all(torch.equal(v, context.training.initial_model().state_dict()[k]) for k, v in start.items())

    student = compressor.compress(job.new_model(), context)
    assert compressor.settings() == configured  # fixed when the compressor was built, whatever it did since
    settings = {**compressor.settings(), **compressor.results()}
    assert settings["loss"]["first"] > settings["loss"]["last"]
    assert settings["teacher_checkpoint"] == str(teacher_file) and settings["teacher"] == "mobilenetv3_small_100"
    assert (settings["T"], settings["alpha"], settings["epochs"], settings["lr"]) == (10.0, 0.1, 2, cfg.compressor.lr)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in job.new_model().parameters())
    assert not all(torch.equal(v, student.state_dict()[k]) for k, v in start.items())  # it did train
    assert not (tmp_path / "runs").exists()  # a teacher_checkpoint is used as given: nothing is trained for it


# ---------------------------------------------------------------------------------------------------- compress.py


def test_compress_kd_end_to_end_trains_the_teacher_once_and_deploys_the_distilled_student(tmp_path, data_dir):
    # A teacher config that differs from the student's (dropout) gets a run folder of its own, at the small model's
    # smoke cost; `teacher=mobilenetv3_small_100` alone would be the baseline's own run (self-distillation).
    # Baseline and teacher train for 1 epoch (the smoke budget's half). compressor.lr: a smoke-trained teacher is a
    # poor one whose logits in eval mode are large, and a student distilled from it at the default lr 0.05 diverges.
    common = [
        *SMOKE_KD,
        "teacher=mobilenetv3_small_100",
        "teacher.drop_rate=0.2",
        "compressor.lr=0.01",
        "trainer.max_epochs=1",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    ]
    # Three trainings (baseline, teacher, student): ~20 s on 2 idle cores, minutes when other jobs share them.
    first = run_cli("compress.py", *common, "compressor.epochs=2", timeout=600)
    assert "no finished teacher for this config" in first.stderr + first.stdout
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["compressor"] == "kd" and record["model"] == "mobilenetv3_small_100"
    # The deployed file is the distilled student alone: the baseline's tensors (no teacher, no distillation wrapper,
    # which would add tensors or prefix their names), trained to other values.
    student, baseline = load_state_dict(record["checkpoint"]), load_state_dict(record["baseline"]["checkpoint"])
    assert {k: v.shape for k, v in student.items()} == {k: v.shape for k, v in baseline.items()}
    assert not all(torch.equal(v, baseline[k]) for k, v in student.items())
    compression = record["compression"]
    assert compression["loss"]["last"] < compression["loss"]["first"]
    assert compression["time_s"] > 0 and compression["epochs"] == 2 and compression["lr"] == 0.01
    assert compression["teacher"] == "mobilenetv3_small_100" and compression["T"] == 10.0
    assert Path(record["checkpoint"]).is_file() and record["checkpoint"] != record["baseline"]["checkpoint"]

    teacher_run = Path(compression["teacher_checkpoint"]).parents[1]
    baseline_run = Path(record["baseline"]["checkpoint"]).parents[1]
    assert teacher_run.parent == tmp_path / "runs" and teacher_run != baseline_run
    assert (teacher_run / "model.pt").is_file()
    trained_at = (teacher_run / "model.pt").stat().st_mtime_ns

    second = run_cli("compress.py", *common, "compressor.epochs=1", timeout=600)
    assert "reusing the teacher trained with this config" in second.stderr + second.stdout
    assert "reusing the baseline trained with this config" in second.stderr + second.stdout
    assert (teacher_run / "model.pt").stat().st_mtime_ns == trained_at
    assert read_jsonl(tmp_path / "records.jsonl")[-1]["compression"]["teacher_checkpoint"] == str(
        teacher_run / "checkpoints" / "last.ckpt"
    )


def test_compress_kd_without_a_teacher_stops_before_any_work(tmp_path, data_dir):
    proc = run_cli("compress.py", *SMOKE_KD, f"paths.results={tmp_path}", f"paths.data={data_dir}", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "teacher=" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "records.jsonl").exists()
