"""compressor=kd in-process: the frozen teacher while a student trains, a diverging student, where the teacher trains,
and the distillation on the smoke data given a context (tests/unit/test_kd_loss.py: the loss and the refused configs;
tests/integration/test_kd_entry_point.py: compress.py end to end)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from edgecomp.compress.context import RunSpec
from edgecomp.config import build, resolved_config, run_id
from edgecomp.lit.hinton_distillation_module import HintonDistillationModule
from tests.conftest import compose_config

SMOKE_KD = ["experiment=smoke", "compressor=kd", "logger=none", "trainer.enable_progress_bar=false"]

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


def test_the_teacher_trains_into_the_run_folder_of_train_py_with_model_set_to_the_teacher(compression_context_for):
    cfg, context = compression_context_for(
        "experiment=smoke", "compressor=kd", "teacher=mobilenetv3_large_100", data=False
    )
    teacher = context.teacher_training()
    as_trained_by_train_py = compose_config(
        "train", ["experiment=smoke", "model=mobilenetv3_large_100", f"paths.data={cfg.paths.data}"]
    )
    assert teacher.run_dir == Path(cfg.paths.runs) / run_id(resolved_config(as_trained_by_train_py))
    assert teacher.new_model().__class__.__name__ == "MobileNetV3" and teacher.model_name.endswith("large_100")
    assert cfg.model.name == "mobilenetv3_small_100"  # the job it came from is unchanged


# ---------------------------------------------------------------------------------------------------- distillation


def test_distillation_on_the_smoke_data_lowers_the_loss_from_the_baselines_initial_weights(
    tmp_path, compression_context_for, one_torch_thread
):
    teacher_file = tmp_path / "teacher.pt"
    teacher_cfg = compose_config("compress", ["experiment=smoke", "teacher=mobilenetv3_small_100"]).teacher
    torch.manual_seed(123)
    torch.save(build(teacher_cfg).state_dict(), teacher_file)  # any weights for the teacher's architecture
    cfg, context = compression_context_for(
        *SMOKE_KD,
        "teacher=mobilenetv3_small_100",
        "compressor.epochs=2",
        f"compressor.teacher_checkpoint={teacher_file}",
    )
    compressor = build(cfg.compressor)
    compressor.check(RunSpec.from_config(cfg))
    configured = compressor.settings()
    compressor.prepare(context)

    # The student starts from the weights the from-scratch baseline starts from, whatever ran before.
    start = context.training.initial_model().state_dict()
    torch.randn(1000)
    assert all(torch.equal(v, context.training.initial_model().state_dict()[k]) for k, v in start.items())

    student = compressor.compress(build(cfg.model), context)
    assert compressor.settings() == configured  # fixed when the compressor was built, whatever it did since
    settings = {**compressor.settings(), **compressor.results()}
    assert settings["loss"]["first"] > settings["loss"]["last"]
    assert settings["teacher_checkpoint"] == str(teacher_file) and settings["teacher"] == "mobilenetv3_small_100"
    assert (settings["T"], settings["alpha"], settings["epochs"], settings["lr"]) == (10.0, 0.1, 2, cfg.compressor.lr)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in build(cfg.model).parameters())
    assert not all(torch.equal(v, student.state_dict()[k]) for k, v in start.items())  # it did train
    assert not (tmp_path / "runs").exists()  # a teacher_checkpoint is used as given: nothing is trained for it
