"""MMDetection's one-stage detectors (RetinaNet, FCOS, GFL, ...) behind `DetectorAdapter` (an optional extra).

The adapter builds the detector from an mmdet config file (`model.config`) with mmdet's own registry and runs mmdet's
own modules: its backbone and neck (`features`), its head's forward (`head`: the raw per-level outputs), its head's
`loss_by_feat` (anchors or points, target assignment, losses) and `predict_by_feat` (decoding, score threshold,
NMS). edgecomp only supplies its conventions (adapter.py): RGB images in [0, 1], normalised here with the config's
`data_preprocessor` mean and std (mmdet's are on 0-255, so they are divided by 255); boxes in pixels of the S x S
input, which is the image mmdet is told about (`img_shape = pad_shape = (S, S)`, scale factor 1), so its decoded
boxes are in that frame too; labels 0..C-1, which mmdet's sigmoid heads use unchanged.

Nothing is downloaded: the backbone's `init_cfg` (mmdet's configs name torchvision's ImageNet weights) is dropped, so
the network starts from mmdet's own random initialisation (its heads' prior-probability bias included) unless
`pretrained_file` gives edgecomp weights or `mmdet_checkpoint` an mmdet checkpoint of the same config.

mmdet, mmengine and mmcv are an optional extra (requirements-mmdet.txt, installed by scripts/install_mmdet.sh): the
core never imports this module, and without the extra `model=mmdet` stops with the install command.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, cast

import torch

from edgecomp.errors import ConfigError
from edgecomp.models.detection.adapter import DetectorAdapter, DetectorFeatures, HeadOutputs
from edgecomp.models.detection.torchvision_dense import FCOSHeadOutputs

REPOSITORY = Path(__file__).resolve().parents[3]
INSTALL = "bash scripts/install_mmdet.sh"  # the optional extra's install (docs/detectors.md, "MMDetection detectors")
# mmdet's config files ship inside the package (mmdet/.mim/configs); edgecomp's under conf/mmdet/ inherit from them
# with mmengine's package scope: _base_ = ["mmdet::retinanet/retinanet_r50_fpn_1x_coco.py"].


def _require_mmdet() -> None:
    """Register mmdet's modules (and quiet mmengine's logger), or raise a one-line ConfigError naming the install
    command when the extra is not installed."""
    try:
        from mmdet.utils import register_all_modules
    except ImportError as err:
        raise ConfigError(
            f"model=mmdet needs the MMDetection extra (mmdet, mmengine, mmcv), which is not installed ({err}): "
            f"run `{INSTALL}` from the repository root"
        ) from err
    register_all_modules(init_default_scope=True)
    from mmengine.logging import MMLogger

    # mmengine logs every parameter's initialisation at INFO (hundreds of lines per model built)
    MMLogger.get_current_instance().setLevel(logging.WARNING)


class MMDetAdapter(DetectorAdapter):
    """An mmdet one-stage detector: `config` an mmdet config file (its `model` is built), `num_classes` and
    `input_size` edgecomp's; `score_threshold` and `max_detections` replace the config's test_cfg `score_thr` and
    `max_per_img`."""

    backbone_prefixes = ("detector.backbone.",)
    weight_file_prefixes = (("", "detector."),)  # an mmdet model's state_dict, as mmdet names it

    def __init__(
        self,
        config: str | os.PathLike,
        num_classes: int,
        input_size: int,
        score_threshold: float = 0.05,
        max_detections: int = 100,
        mmdet_checkpoint: str | os.PathLike | None = None,
        arch: str | None = None,
    ) -> None:
        super().__init__(num_classes, input_size)
        _require_mmdet()
        from mmdet.registry import MODELS
        from mmengine.config import Config

        path = config_file(config)
        model_cfg = Config.fromfile(str(path)).model
        if "bbox_head" not in model_cfg or "roi_head" in model_cfg:
            raise ConfigError(
                f"model.config={config}: a {model_cfg.get('type')} is not a one-stage detector with a `bbox_head`; "
                "edgecomp's mmdet adapter takes one-stage detectors (RetinaNet, FCOS, GFL, ATSS, ...)"
            )
        model_cfg.bbox_head.num_classes = num_classes
        model_cfg.backbone.init_cfg = None  # mmdet's configs name downloadable ImageNet weights
        test_cfg = dict(model_cfg.get("test_cfg") or {})
        test_cfg.update(score_thr=score_threshold, max_per_img=max_detections)
        model_cfg.test_cfg = test_cfg
        preprocessor = model_cfg.get("data_preprocessor") or {}
        mean = [float(v) / 255 for v in preprocessor.get("mean", (123.675, 116.28, 103.53))]
        std = [float(v) / 255 for v in preprocessor.get("std", (58.395, 57.12, 57.375))]
        self.config_path = str(path)
        self.arch = arch  # the shipped config's name (conf/mmdet/<arch>.py) when `config` is one of them
        self.detector = MODELS.build(model_cfg)
        self.detector.init_weights()  # mmdet's own initialisation (e.g. the classifier's prior-probability bias)
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.register_normalisation(mean, std)
        # What the head's forward returns decides the outputs' fields: (cls, bbox) or (cls, bbox, centerness)
        with torch.no_grad():
            probe = self.detector.bbox_head(self.features(torch.zeros(1, 3, 64, 64)).pyramid)
        if len(probe) == 3:
            self.head_outputs_class = FCOSHeadOutputs  # (cls, bbox, centerness), as torchvision's FCOS
        elif len(probe) != 2:
            raise ConfigError(
                f"model.config={config}: its {type(self.detector.bbox_head).__name__} returns {len(probe)} lists of "
                "per-level outputs; the adapter takes heads returning (cls, bbox) or (cls, bbox, centerness)"
            )
        if mmdet_checkpoint is not None:
            self._load_mmdet_checkpoint(Path(mmdet_checkpoint))

    # ------------------------------------------------------------------------------------------ the network

    def features(self, images: torch.Tensor) -> DetectorFeatures:
        """mmdet's backbone stages (the last is `last_stage`) and its neck's pyramid, finest first."""
        stages = self.detector.backbone(self.normalise(images))
        pyramid = self.detector.neck(stages) if self.detector.with_neck else stages
        return DetectorFeatures(last_stage=stages[-1], pyramid=list(pyramid))

    def head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        outputs = self.detector.bbox_head(tuple(pyramid))
        return self.head_outputs_class(*[list(level_outputs) for level_outputs in outputs])

    # ------------------------------------------------------------------------------------------ mmdet's logic

    def _head_arguments(self, outputs: HeadOutputs) -> list[list[torch.Tensor]]:
        return [getattr(outputs, field.name) for field in dataclasses.fields(outputs)]

    def image_metas(self, count: int) -> list[dict[str, Any]]:
        """What mmdet is told about each image: the S x S input itself, unscaled and unpadded."""
        size = (self.input_size, self.input_size)
        return [
            {
                "img_shape": size,
                "pad_shape": size,
                "ori_shape": size,
                "batch_input_shape": size,
                "scale_factor": (1.0, 1.0),
            }
            for _ in range(count)
        ]

    def loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """mmdet's head loss (`loss_by_feat`) for `targets`, each term summed over the levels it comes in."""
        self._check_images(images)
        self._check_targets(images, targets)
        return self.head_loss(self(images), targets)

    def head_loss(self, outputs: HeadOutputs, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """mmdet's `loss_by_feat` on given head outputs (this network's, or computed on a distiller's features)."""
        from mmengine.structures import InstanceData

        gt_instances = [InstanceData(bboxes=t["boxes"].float(), labels=t["labels"].long()) for t in targets]
        terms = self.detector.bbox_head.loss_by_feat(
            *self._head_arguments(outputs),
            batch_gt_instances=gt_instances,
            batch_img_metas=self.image_metas(len(targets)),
        )
        # A term given per level is a list of tensors, and their sum a tensor.
        return {
            name: cast(torch.Tensor, sum(value)) if isinstance(value, (list, tuple)) else value
            for name, value in terms.items()
        }

    @torch.no_grad()
    def decode(self, outputs: HeadOutputs) -> list[dict[str, torch.Tensor]]:
        """mmdet's `predict_by_feat`: the config's decoding and NMS, at this adapter's score threshold and count."""
        count = len(outputs.classification[0])
        detections = self.detector.bbox_head.predict_by_feat(
            *self._head_arguments(outputs), batch_img_metas=self.image_metas(count), rescale=False
        )
        return [{"boxes": d.bboxes.float(), "scores": d.scores.float(), "labels": d.labels.long()} for d in detections]

    def _load_mmdet_checkpoint(self, path: Path) -> None:
        """An mmdet checkpoint of this config (its `state_dict`, keys as mmdet's model names them), read with
        torch.load(weights_only=True)."""
        from edgecomp.models.weight_files import read_checkpoint

        checkpoint = read_checkpoint(path)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ConfigError(f"model.mmdet_checkpoint={path}: not an mmdet checkpoint (no state_dict)")
        try:
            missing, unexpected = self.detector.load_state_dict(state, strict=False)
        except RuntimeError as err:  # a shape that differs: another depth, or a head for another class count
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise ConfigError(
                f"model.mmdet_checkpoint={path} does not fit model.config={self.config_path} with "
                f"num_classes={self.num_classes}: {first}"
            ) from err
        if unexpected or missing:
            raise ConfigError(
                f"model.mmdet_checkpoint={path} does not fit model.config={self.config_path}: "
                f"{len(missing)} missing ({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}), "
                f"{len(unexpected)} unexpected keys"
            )


def config_file(config: str | os.PathLike) -> Path:
    """`model.config` as a file: as given (absolute, or from the working folder), else from the repository root
    (edgecomp's own conf/mmdet/ from any working folder)."""
    path = Path(config)
    if not path.is_file() and not path.is_absolute() and (REPOSITORY / path).is_file():
        path = REPOSITORY / path
    if not path.is_file():
        raise ConfigError(f"model.config={config}: no such mmdet config file")
    return path


def head_class(config: str | os.PathLike) -> type:
    """The class of an mmdet config's `bbox_head` (read from the file, nothing built)."""
    _require_mmdet()
    from mmdet.registry import MODELS
    from mmengine.config import Config

    return MODELS.get(Config.fromfile(str(config_file(config))).model.bbox_head.type)

