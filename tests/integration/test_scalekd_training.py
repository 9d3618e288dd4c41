"""ScaleKD's training loop through a Lightning Trainer: one global step per batch, the assistant stepped before the
student, a part switched off gone from the modules, terms and optimizers, a frozen backbone's weights and BatchNorm
statistics held until it thaws (tests/unit/test_scalekd_ablations.py: the ablation switches)."""

from __future__ import annotations

import warnings
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from edgecomp.distill.families import family_view
from edgecomp.lit.detection_distillation_module import backbone_norms
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from tests.helpers.distillation import batch_of, compressor, detector

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = ("compressor.csa.dim=32", "compressor.sdf.embed_channels=16")


def fit(method, student, teacher, max_steps: int, batches: int, callbacks=()) -> tuple[pl.LightningModule, pl.Trainer]:
    """`method`'s LightningModule trained by a Lightning Trainer for `max_steps` on `batches` batches per epoch."""
    module = method.training_module(
        student, teacher, optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9), warmup_steps=1
    )
    trainer = pl.Trainer(
        max_steps=max_steps, max_epochs=100, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=list(callbacks),
    )  # fmt: skip
    data = [batch_of(seed=i, method=method) for i in range(batches)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few batches, no validation: on purpose
        trainer.fit(module, DataLoader(data, batch_size=None))
    return module, trainer


class OptimizerOrder(pl.Callback):
    """Which optimizer stepped, in order: the assistant's (its LightningOptimizer's index 1) or the student's."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        names = {id(o.optimizer): name for o, name in zip(pl_module.all_optimizers(), ["student", "csa"], strict=False)}
        self.order.append(names[id(optimizer)])


def test_scalekd_counts_one_global_step_per_batch_and_steps_the_assistant_before_the_student():
    method = compressor("scalekd", *SMALL)
    order = OptimizerOrder()
    module, trainer = fit(method, detector(YOLOv8Adapter, 0, scale="n"), detector(YOLOv8Adapter, 1, scale="n"),
                          max_steps=3, batches=4, callbacks=[order])  # fmt: skip
    assert module.steps_done == trainer.global_step == 3  # max_steps=3 is three batches, as for every other method
    assert order.order == ["csa", "student"] * 3


@pytest.mark.parametrize(
    ("override", "terms"),
    [("compressor.sdf.enabled=false", {"loss_cls", "loss_bbox"}), ("compressor.csa.enabled=false", {"loss_feat"})],
)
def test_a_part_switched_off_has_no_modules_no_terms_and_no_optimizer(override, terms):
    method = compressor("scalekd", *SMALL, override)
    order = OptimizerOrder()
    module, trainer = fit(method, detector(YOLOv8Adapter, 0, scale="n"), detector(YOLOv8Adapter, 1, scale="n"),
                          max_steps=1, batches=1, callbacks=[order])  # fmt: skip
    distiller = module.distiller
    assert set(distiller.terms) == terms
    logged = {k.removeprefix("train/") for k in trainer.callback_metrics}
    assert logged & {"loss_feat", "loss_cls", "loss_bbox"} == terms
    if "loss_feat" in terms:  # no CSA: nothing of it exists, no second optimizer, no assistant loss
        assert distiller.csa is None and order.order == ["student"] and "loss_assistant" not in logged
    else:
        assert distiller.sdf is None and order.order == ["csa", "student"] and "loss_assistant" in logged
        assert not list(distiller.student_parameters())


def test_a_frozen_backbone_holds_its_weights_and_batchnorm_statistics_across_epochs_until_it_thaws():
    method = compressor("scalekd", *SMALL, "compressor.schedule.freeze_backbone=3")
    student = detector(YOLOv8Adapter, 0, scale="n")
    backbone = family_view(student).backbone
    initial = {k: v.clone() for k, v in backbone.state_dict().items()}
    states = []

    class Snapshots(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            states.append(({k: v.clone() for k, v in backbone.state_dict().items()},
                           [m.training for m in backbone_norms(backbone)]))  # fmt: skip

    # 2 batches per epoch: the third (frozen) step comes after Lightning put the module back in training mode.
    fit(method, student, detector(YOLOv8Adapter, 1, scale="n"), max_steps=4, batches=2, callbacks=[Snapshots()])
    assert len(states) == 4
    for state, modes in states[:3]:
        assert all(torch.equal(value, initial[key]) for key, value in state.items())  # weights and statistics
        assert not any(modes)
    thawed, modes = states[3]
    changed = {key for key, value in thawed.items() if not torch.equal(value, initial[key])}
    assert any(key.endswith("running_mean") for key in changed) and any(key.endswith("weight") for key in changed)
    assert all(modes)
