"""ScaleKD's LightningModule: the detection distillation module (edgecomp.lit.detection_distillation_module) plus the
cross-scale assistant's own update, stepped before the student's in every iteration (section 3.2: "during
distillation, we perform a weights update prior to the student model at each iteration through a standard training
scheme and detection objectives"; section 4.1: "an Adam optimizer with an initial learning rate of 3e-4 and a
weight-decay of 1e-4 to update the CSA module").

Each iteration:
1. the teacher (no gradients, its `teacher_scale` x input) and the student (features, head, detection step) run once;
2. the assistant's pyramid, from the student's (detached) and the teacher's features, runs through the student's head
   and its detection loss on the ground truth (`loss_assistant`) updates the CSA alone, with its optimizer
   (the gradient it leaves on the shared head is discarded);
3. the updated assistant's head outputs (no gradients) are the reference of L_cls and L_bbox, and the student takes
   its step on L = alpha L_feat + beta L_cls + gamma L_bbox + L_det.
The assistant trains from the first iteration; the student's warm-up (`schedule.student_warmup`) only delays when its
knowledge starts to weigh in the student's loss. The assistant's step does not advance Lightning's global step: one
batch is one step (`trainer.max_steps`, step-based schedules and logging mean for ScaleKD what they mean for its
baselines). With `csa.enabled=false` there is no assistant and no second optimizer.
"""

from __future__ import annotations

from typing import Any

import torch

from edgecomp.distill.distiller import TERMS, DistillationBatch
from edgecomp.distill.scalekd_distiller import ScaleKD
from edgecomp.lit.detection_distillation_module import DetectionDistillationModule, uncounted_step
from edgecomp.lit.optimization import OptimizerFactory


class ScaleKDModule(DetectionDistillationModule):
    distiller: ScaleKD
    summary_terms = (*TERMS, "loss_det", "loss", "loss_assistant")

    def __init__(self, *args: Any, assistant_optimizer: OptimizerFactory, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.distiller, ScaleKD):
            raise TypeError(f"ScaleKDModule trains a ScaleKD distiller, got {type(self.distiller).__name__}")
        self.assistant_optimizer_factory = assistant_optimizer

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        if not self.distiller.has_assistant:  # csa.enabled=false: nothing to step but the student
            return []
        return [self.assistant_optimizer_factory(self.distiller.assistant_parameters())]

    def before_student_update(self, batch: DistillationBatch) -> dict[str, torch.Tensor]:
        if not self.distiller.has_assistant:
            return {}
        step = self.distiller.assistant_step(batch)
        loss = torch.stack(list(step.losses.values())).sum()
        optimizer = self.all_optimizers()[1]
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip(optimizer)
        with uncounted_step(optimizer):  # one global step per batch, as every other method's
            optimizer.step()
        return {"loss_assistant": loss.detach()}
