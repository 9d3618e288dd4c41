"""The interface of a task's quality metric: what `metrics` in a record holds.

An evaluator scores a model on its datamodule's evaluation split. It gets both the model and the Predictor the
target device's runtime made of it: a classifier is scored through the Predictor (so an ONNX Runtime or FP16
deployment is what is scored), a detector through its own decoding (`DetectorAdapter.predict`: box decoding and
NMS are not part of the deployable network the runtime runs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch.nn as nn

from edgecomp.evaluate.runtimes.base import Predictor

# Each task's headline accuracy metric: what a report's accuracy column and a search's default score are.
ACCURACY_METRIC = {"classification": "top1", "detection": "map"}


class Evaluator(ABC):
    # The keys of the metrics it reports, known before anything runs (a setting that names a metric is checked
    # against them before any work).
    metric_names: tuple[str, ...] = ()

    @abstractmethod
    def __call__(self, model: nn.Module, predictor: Predictor, datamodule, device) -> dict[str, float]:
        """The metrics of `model` (deployed as `predictor` on `device`) on `datamodule`'s evaluation split."""
