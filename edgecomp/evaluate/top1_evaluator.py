"""Top-1 accuracy of a Predictor over a dataloader, with torchmetrics doing the counting; with a bootstrap, its
interval over the evaluation images from the per-image outcomes kept along the way."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy
from tqdm.auto import tqdm

from edgecomp.evaluate.evaluator import Evaluation, Evaluator, bootstrap_ci95, check_resamples
from edgecomp.evaluate.runtimes.runtime import Predictor


def top1_per_image(
    predictor: Predictor, loader: DataLoader, num_classes: int, desc: str = "top-1"
) -> tuple[float, np.ndarray]:
    """Top-1 accuracy (torchmetrics) and whether each image's top class is its label (a bool per image, in order)."""
    top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
    correct = []
    for images, labels in tqdm(loader, desc=desc, unit="batch", disable=None, leave=False):
        outputs = predictor(predictor.prepare(images))
        logits = predictor.to_logits(outputs)
        top1.update(logits, labels)
        correct.append((logits.argmax(dim=1) == labels).cpu())  # what torchmetrics counts at top_k=1
    outcomes = torch.cat(correct).numpy() if correct else np.zeros(0, dtype=bool)
    return float(top1.compute()), outcomes


def evaluate_top1(predictor: Predictor, loader: DataLoader, num_classes: int, desc: str = "top-1") -> dict[str, float]:
    return {"top1": top1_per_image(predictor, loader, num_classes, desc)[0]}


class Top1Evaluator(Evaluator):
    """Top-1 accuracy through the target device's runtime; `evaluate` adds its bootstrap interval over the images
    (`bootstrap` resamples, 0: none)."""

    metric_names = ("top1",)

    def __init__(self, num_classes: int, bootstrap: int = 0) -> None:
        self.num_classes = num_classes
        self.bootstrap = check_resamples(bootstrap)

    def __call__(self, model, predictor: Predictor, datamodule, device) -> dict[str, float]:
        return evaluate_top1(predictor, datamodule.eval_dataloader(), self.num_classes)

    def evaluate(self, model, predictor: Predictor, datamodule, device) -> Evaluation:
        top1, correct = top1_per_image(predictor, datamodule.eval_dataloader(), self.num_classes)
        images = correct.size
        ci95 = bootstrap_ci95(
            {"top1": lambda indices: np.count_nonzero(correct[indices]) / images}, images, self.bootstrap
        )
        return Evaluation({"top1": top1}, ci95)
