"""Faster R-CNN (torchvision's two-stage detector) behind `DetectorAdapter`.

torchvision's Faster R-CNN reserves class 0 for background, so the model is built with C + 1 classes and the
adapter shifts labels: +1 into `loss()`, -1 out of `predict()` (torchvision's post-processing drops the background
column, so predictions come back as 1..C and leave as 0..C-1). Nothing outside the adapter sees the shift, except
the raw second-stage outputs of `roi_outputs()`, whose column 0 is the background.

The two stages, and what each view of the adapter covers:
- first stage (dense, per pyramid level): the RPN head, objectness and box deltas per anchor. `head()` returns it,
  and `forward()` (the deployable network that latency and FLOPs measure) ends there: normalisation, backbone,
  FPN, RPN head;
- second stage (per proposal): RoIAlign on the pyramid, the two-layer MLP box head and the predictor.
  It works on proposals (the RPN's decoded, NMS'd boxes), not on a dense grid, so it is exposed separately by
  `roi_outputs()`, which a distiller calls on the proposals it chooses (e.g. the same proposals for teacher and
  student). `forward()` leaves it out, so its cost is not in the measured latency/FLOPs.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torchvision.models.detection import FasterRCNN

from edgecomp.models.detection.adapter import DetectorFeatures, HeadOutputs
from edgecomp.models.detection.backbones import ExtraLevels, build_fpn_backbone, pyramid_level_names
from edgecomp.models.detection.torchvision_dense import TorchvisionDetectorAdapter


@dataclass
class RoIHeadOutputs:
    """The second stage's raw outputs for a batch of proposals (all images' proposals concatenated, in order):
    class_logits (P, C+1), column 0 = background, column k+1 = class k; box_regression (P, (C+1)*4), the class-
    specific deltas relative to each proposal (torchvision's BoxCoder, weights 10, 10, 5, 5), background first."""

    class_logits: torch.Tensor
    box_regression: torch.Tensor


class FasterRCNNAdapter(TorchvisionDetectorAdapter):
    """torchvision's Faster R-CNN with FPN (P2-P5 + pool, 3 anchors per location, RoIAlign 7x7 on P2-P5,
    TwoMLPHead 1024), all of torchvision's defaults except the input size, the number of classes (C + 1), the score
    threshold and the detection count of the second stage. `proposals_train` / `proposals_test` (the RPN's proposals
    per image and FPN level before NMS, and kept after it; torchvision's 2000 / 1000) and `rois_per_image` (the RoIs
    sampled per image for the second stage's loss; 512) bound the second stage's cost.

    `head()` returns the RPN head per level l (strides 4..64): classification = objectness logits (N, A, h_l, w_l)
    and regression = box deltas (N, A*4, h_l, w_l), A = 3 (torchvision's `RPNHead` already returns them per
    level). See `roi_outputs()` for the second stage.
    """

    # The second stage (RoIAlign, box head, per-class NMS) runs on proposals outside forward(): detections need the
    # eager network, not forward()'s RPN outputs.
    decodes_forward_outputs = False

    extra_levels: ExtraLevels = "maxpool"

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        backbone: str = "resnet18",
        score_threshold: float = 0.05,
        max_detections: int = 100,
        proposals_train: int = 2000,
        proposals_test: int = 1000,
        rois_per_image: int = 512,
    ) -> None:
        super().__init__(num_classes, input_size, backbone)
        network, _ = build_fpn_backbone(backbone, self.extra_levels)
        self.detector = FasterRCNN(
            network,
            num_classes + 1,
            box_score_thresh=score_threshold,
            box_detections_per_img=max_detections,
            # The second stage costs per proposal (a 12544 -> 1024 MLP each): these bound it.
            rpn_pre_nms_top_n_train=proposals_train,
            rpn_post_nms_top_n_train=proposals_train,
            rpn_pre_nms_top_n_test=proposals_test,
            rpn_post_nms_top_n_test=proposals_test,
            box_batch_size_per_image=rois_per_image,
            **self.torchvision_transform_arguments(),
        )
        self.num_anchors = self.detector.rpn.anchor_generator.num_anchors_per_location()[0]
        # The RoI pooling selects pyramid levels by these names ("0".."3"), so roi_outputs() restores them.
        self.pyramid_level_names = pyramid_level_names(network, self.extra_levels)

    def head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        objectness, box_deltas = self.detector.rpn.head(pyramid)
        return HeadOutputs(classification=objectness, regression=box_deltas)

    def roi_outputs(
        self,
        features: list[torch.Tensor] | DetectorFeatures,
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]] | None = None,
    ) -> RoIHeadOutputs:
        """The second stage on given proposals: `features` is the pyramid (or a `DetectorFeatures`), `proposals`
        one (P_i, 4) xyxy tensor per image in pixels of the S x S frame, `image_sizes` (h, w) per image (default
        S x S; RoIAlign derives each level's scale from it). No sampling, no decoding: the raw logits and deltas."""
        pyramid = features.pyramid if isinstance(features, DetectorFeatures) else features
        if len(pyramid) != len(self.pyramid_level_names):
            raise ValueError(f"expected {len(self.pyramid_level_names)} pyramid levels, got {len(pyramid)}")
        if image_sizes is None:
            image_sizes = [(self.input_size, self.input_size)] * len(proposals)
        roi_heads = self.detector.roi_heads
        named_pyramid = OrderedDict(zip(self.pyramid_level_names, pyramid, strict=True))
        pooled = roi_heads.box_roi_pool(named_pyramid, proposals, image_sizes)
        class_logits, box_regression = roi_heads.box_predictor(roi_heads.box_head(pooled))
        return RoIHeadOutputs(class_logits=class_logits, box_regression=box_regression)

    def to_detector_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels + 1  # 0 is torchvision's background

    def from_detector_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels - 1

    def _detection_logic_modules(self) -> list[torch.nn.Module]:
        # The RPN (proposal counts, loss) and the RoI heads (proposal sampling, loss) branch on `training` too.
        return [*super()._detection_logic_modules(), self.detector.rpn, self.detector.roi_heads]
