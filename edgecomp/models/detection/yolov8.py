"""Ultralytics YOLOv8 (n/s/m/l/x) behind `DetectorAdapter`, built from Ultralytics' own yaml and trained with its
own loss (task-aligned assignment, BCE classification, CIoU + distribution focal loss).

Ultralytics is AGPL-3.0: it is imported here (and by edgecomp.models.ultralytics_checkpoint, to read its files),
and only when a YOLO model is built or an Ultralytics file is read.
Importing it would otherwise write a settings file under the user's home and may check the network, so the
environment is set first (without overriding a user's own choice): `YOLO_OFFLINE=1`, and `YOLO_CONFIG_DIR` in
edgecomp's cache folder.

The views:
- `features()`: the network's layers up to the head, as Ultralytics runs them (each layer reads the outputs its
  `f` index names); `last_stage` is the backbone's last layer (SPPF), `pyramid` the three inputs of the Detect
  head (P3, P4, P5; strides 8, 16, 32);
- `head()`: per level, classification logits (N, C, h, w) from the head's `cv3` branch and the box distribution
  (N, 4 * reg_max, h, w) from its `cv2` branch (distances to the four sides as `reg_max`-bin distributions, before
  the DFL expectation), i.e. Detect's raw output before it flattens the levels;
- `predict()`: Ultralytics' decoding (DFL, anchors, strides) and NMS at its validation settings (confidence 0.001,
  IoU 0.7, multi-label), at most `max_detections` per image.
No normalisation: YOLO takes RGB in [0, 1], what the data pipeline gives.

Ultralytics' `Concat` layers are swapped, instance by instance, for `TraceableConcat`, which lists its inputs one by
one. The output is the same; what changes is that torch.fx (the tracer behind ModelOpt's structured pruning,
edgecomp.compress.pruning.fastnas) can follow channels through it. Ultralytics' own class is left as it is: only the
instances inside this adapter change class, so a model the user builds with Ultralytics directly is untouched.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TypedDict

import torch

from edgecomp.models.detection.adapter import DetectorAdapter, DetectorFeatures, HeadOutputs

SCALES = ("n", "s", "m", "l", "x")
# Ultralytics' default loss gains (ultralytics/cfg/default.yaml): box 7.5, cls 0.5, dfl 1.5.
LOSS_GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


class UltralyticsPredictions(TypedDict):
    """A head's outputs flattened as Ultralytics' loss and decoder take them (`flatten_head_outputs`)."""

    boxes: torch.Tensor  # (N, 4 * reg_max, sum_l h_l w_l): the side distributions
    scores: torch.Tensor  # (N, C, sum_l h_l w_l): the class logits
    feats: list[torch.Tensor]  # the per-level classification outputs, read for the levels' (h, w) only


def offline_ultralytics_environment() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if "YOLO_CONFIG_DIR" not in os.environ:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecomp" / "ultralytics"
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only home: a private temporary folder still keeps Ultralytics off the home
            cache = Path(tempfile.mkdtemp(prefix="edgecomp-ultralytics-"))
        os.environ["YOLO_CONFIG_DIR"] = str(cache)


def _ultralytics():
    offline_ultralytics_environment()
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load
    from ultralytics.utils.nms import non_max_suppression

    return DetectionModel, yaml_model_load, non_max_suppression


@functools.cache
def traceable_concat_class() -> type:
    """Ultralytics' Concat with `torch.cat([x[0], x[1], ...], d)` in place of `torch.cat(x, d)`.

    Traced by torch.fx, `torch.cat(x, d)` on the layer's input list becomes one concatenation of a single opaque
    list node, in which ModelOpt's dependency analysis cannot find the tensors whose channels are concatenated (it
    fails with "'Node' object is not iterable"). Indexing the list element by element (Ultralytics sets `f`, the
    indices of the layer's inputs, on every layer) gives fx one node per input. Built on first use, because
    Ultralytics is only imported when a YOLO model is built.
    """
    offline_ultralytics_environment()
    from ultralytics.nn.modules import Concat

    class TraceableConcat(Concat):
        f: list[int]  # the indices of the layer's inputs (set by Ultralytics' model parser)

        def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([x[i] for i in range(len(self.f))], self.d)

    return TraceableConcat


def make_concat_traceable(network: torch.nn.Module) -> int:
    """Give every Ultralytics Concat layer of `network` the TraceableConcat class (same attributes, same output);
    returns how many were changed. Ultralytics' Concat class itself is not modified."""
    from ultralytics.nn.modules import Concat

    traceable = traceable_concat_class()
    layers = [layer for layer in network.modules() if type(layer) is Concat]
    for layer in layers:
        layer.__class__ = traceable
    return len(layers)


class YOLOv8Adapter(DetectorAdapter):
    """YOLOv8 at `scale` (n, s, m, l, x) for `num_classes` classes, random init (weights come from a checkpoint)."""

    # Ultralytics names the DetectionModel's layers `model.<i>...`, which the adapter holds as `network`: a file it
    # wrote (edgecomp.models.ultralytics_checkpoint), or that state_dict saved with torch.save (whose all-`model.`
    # keys read as a Lightning prefix and lose it).
    weight_file_prefixes = (("model.", "network.model."), ("", "network.model."))

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        scale: str = "n",
        score_threshold: float = 0.001,
        iou_threshold: float = 0.7,
        max_detections: int = 100,
    ) -> None:
        super().__init__(num_classes, input_size)
        if scale not in SCALES:
            raise ValueError(f"YOLOv8 scale must be one of {SCALES}, got {scale!r}")
        if input_size % 32:
            raise ValueError(f"YOLOv8 needs an input size divisible by its largest stride 32, got {input_size}")
        detection_model, yaml_model_load, _ = _ultralytics()
        spec = yaml_model_load(f"yolov8{scale}.yaml")  # shipped with the package: no download
        spec["nc"] = num_classes
        self.scale = scale
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.network = detection_model(spec, ch=3, verbose=False)
        make_concat_traceable(self.network)
        self.network.args = SimpleNamespace(**LOSS_GAINS)  # what Ultralytics' loss reads its gains from
        self.backbone_end = len(spec["backbone"]) - 1
        self.backbone_prefixes = tuple(f"network.model.{layer}." for layer in range(self.backbone_end + 1))
        self.detect = self.network.model[-1]
        self._criterion = None

    @property
    def criterion(self):
        # Built on first use and on the network's current device (the loss keeps device tensors).
        if self._criterion is None or self._criterion.device != next(self.parameters()).device:
            self._criterion = self.network.init_criterion()
        return self._criterion

    def features(self, images: torch.Tensor) -> DetectorFeatures:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a batch (N, 3, H, W), got shape {tuple(images.shape)}")
        outputs: list[torch.Tensor] = []
        x = images
        for layer in self.network.model[:-1]:
            # The layer's input: the previous output (f == -1), an earlier one, or a list of them.
            inputs: torch.Tensor | list[torch.Tensor] = x
            if layer.f != -1:
                inputs = outputs[layer.f] if isinstance(layer.f, int) else [x if j == -1 else outputs[j] for j in layer.f]
            x = layer(inputs)
            outputs.append(x)
        return DetectorFeatures(last_stage=outputs[self.backbone_end], pyramid=[outputs[j] for j in self.detect.f])

    def head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        return HeadOutputs(
            classification=[branch(level) for branch, level in zip(self.detect.cv3, pyramid, strict=True)],
            regression=[branch(level) for branch, level in zip(self.detect.cv2, pyramid, strict=True)],
        )

    def _raw_predictions(self, pyramid: list[torch.Tensor]) -> UltralyticsPredictions:
        return self.flatten_head_outputs(self.head(pyramid))

    def flatten_head_outputs(self, outputs: HeadOutputs) -> UltralyticsPredictions:
        """Per-level head outputs (this network's, or a distiller's through this head) flattened as Ultralytics'
        loss and decoder take them. Both read "feats" only for the levels' (h, w), which the outputs share."""
        batch = outputs.classification[0].shape[0]
        return UltralyticsPredictions(
            boxes=torch.cat([r.view(batch, 4 * self.detect.reg_max, -1) for r in outputs.regression], dim=-1),
            scores=torch.cat([c.view(batch, self.num_classes, -1) for c in outputs.classification], dim=-1),
            feats=outputs.classification,
        )

    @staticmethod
    def ultralytics_targets(
        targets: list[dict[str, torch.Tensor]], image_size: int, like: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """edgecomp targets (xyxy pixels of the image_size^2 frame) as Ultralytics' loss takes them: normalised
        (x_centre, y_centre, width, height), with each box's image index; on `like`'s device and dtype."""
        batch_index, classes, boxes = [], [], []
        for position, target in enumerate(targets):
            xyxy = target["boxes"].to(like)
            batch_index.append(torch.full((len(xyxy),), float(position), device=like.device))
            classes.append(target["labels"].to(like).view(-1, 1))
            boxes.append(torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1))
        return {
            "batch_idx": torch.cat(batch_index),
            "cls": torch.cat(classes),
            "bboxes": torch.cat(boxes) / image_size,
        }

    def loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Ultralytics' three gain-weighted terms, each per image (its loss returns them times the batch size)."""
        predictions = self._raw_predictions(self.features(images).pyramid)
        batch = self.ultralytics_targets(targets, images.shape[-1], like=images)
        total, _ = self.criterion.loss(predictions, batch)
        terms = total / len(images)
        return {"box": terms[0], "cls": terms[1], "dfl": terms[2]}

    @torch.no_grad()
    def decode(self, outputs: HeadOutputs) -> list[dict[str, torch.Tensor]]:
        """Ultralytics' own decoding (DFL box expectation, grid and strides) and NMS on the head's outputs."""
        decoded = self.detect._inference(self.flatten_head_outputs(outputs))
        return ultralytics_nms(decoded, self.score_threshold, self.iou_threshold, self.max_detections)

    def extra_repr(self) -> str:
        return f"yolov8{self.scale}, {self.num_classes} classes, input {self.input_size}"


def ultralytics_nms(
    decoded: torch.Tensor, score_threshold: float, iou_threshold: float, max_detections: int
) -> list[dict[str, torch.Tensor]]:
    """Ultralytics' NMS (multi-label, as its validation runs it) on decoded predictions (N, 4 + C, A): box centre,
    size in input pixels, then the C class scores; edgecomp's detections per image."""
    _, _, non_max_suppression = _ultralytics()
    kept = non_max_suppression(
        decoded, conf_thres=score_threshold, iou_thres=iou_threshold, multi_label=True, max_det=max_detections
    )
    return [{"boxes": k[:, :4], "scores": k[:, 4], "labels": k[:, 5].long()} for k in kept]


class UltralyticsExportDecoder(torch.nn.Module):
    """Detections from the one output of Ultralytics' own ONNX export of a detection model (`yolo export
    format=onnx`): (N, 4 + C, A) decoded predictions, which its NMS turns into detections (`ultralytics_nms`, at
    Ultralytics' validation settings by default), as the adapter's `decode` does with its head outputs. What
    `evaluate.py artifact=` scores such a file with (edgecomp.evaluate.onnx_outputs)."""

    decodes_forward_outputs = True

    def __init__(self, score_threshold: float = 0.001, iou_threshold: float = 0.7, max_detections: int = 100) -> None:
        super().__init__()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def outputs_from_tensors(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        (decoded,) = tensors
        return decoded

    def decode(self, decoded: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return ultralytics_nms(decoded, self.score_threshold, self.iou_threshold, self.max_detections)
