"""Top-1 accuracy of a Predictor over a dataloader, with torchmetrics doing the counting."""

from __future__ import annotations

from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy
from tqdm.auto import tqdm

from edgecomp.evaluate.evaluator import Evaluator
from edgecomp.evaluate.runtimes.base import Predictor


def evaluate_top1(predictor: Predictor, loader: DataLoader, num_classes: int, desc: str = "top-1") -> dict[str, float]:
    top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
    for images, labels in tqdm(loader, desc=desc, unit="batch", disable=None, leave=False):
        outputs = predictor(predictor.prepare(images))
        top1.update(predictor.to_logits(outputs), labels)
    return {"top1": float(top1.compute())}


class Top1Evaluator(Evaluator):
    """Top-1 accuracy through the target device's runtime."""

    metric_names = ("top1",)

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def __call__(self, model, predictor: Predictor, datamodule, device) -> dict[str, float]:
        return evaluate_top1(predictor, datamodule.eval_dataloader(), self.num_classes)
