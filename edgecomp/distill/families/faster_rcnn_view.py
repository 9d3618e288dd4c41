"""The distillation view of torchvision's Faster R-CNN (edgecomp.models.detection.torchvision_two_stage).

Two stages are distilled, as in Chen et al. 2017 (who distil both the RPN and the RoI classification network):
- "dense": the RPN head per pyramid level, objectness (one sigmoid per anchor) and box deltas relative to the anchor
  (torchvision's BoxCoder, weights 1, 1, 1, 1);
- "roi": the second stage on the proposals the *student* sampled for its own loss (torchvision's sampling: 512 per
  image, a quarter positive, the ground truth added). The other networks (the CSA through the student's RoI head, the
  teacher through its own) are evaluated on those same proposals, so the predictions compare proposal by proposal:
  class logits (softmax over background + C classes) and the box deltas of each proposal's sampled class (the
  ground truth's; background for negatives), relative to the proposal (BoxCoder weights 10, 10, 5, 5).

The detection loss on given head outputs is torchvision's, run piece by piece with the RPN's and RoI heads' own
methods (anchors, proposal decoding and filtering, anchor matching, RPN loss, proposal sampling, `fastrcnn_loss`):
what `RegionProposalNetwork.forward` and `RoIHeads.forward` do, minus running the RPN head again on features whose
head outputs are given.
"""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers

from edgecomp.distill.families.family_view import DetectionStep, Stage, StageTargets, flatten_level, split_levels
from edgecomp.distill.families.torchvision_dense_view import TorchvisionView
from edgecomp.models.detection.adapter import HeadOutputs
from edgecomp.models.detection.torchvision_dense import blank_images
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter


def delta_shift_per_pixel(reference_boxes: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """How BoxCoder deltas (weights w_x, w_y, w_w, w_h) relative to `reference_boxes` change when the decoded box
    moves by +1 px in x and y: (w_x / width, w_y / height, 0, 0)."""
    widths = reference_boxes[..., 2] - reference_boxes[..., 0]
    heights = reference_boxes[..., 3] - reference_boxes[..., 1]
    zeros = torch.zeros_like(widths)
    return torch.stack([weights[0] / widths, weights[1] / heights, zeros, zeros], dim=-1)


class FasterRCNNView(TorchvisionView):
    adapter: FasterRCNNAdapter

    def dense(self, head: HeadOutputs) -> Stage:
        return Stage(
            logits=[flatten_level(o, 1) for o in head.classification],
            boxes=[flatten_level(d, 4) for d in head.regression],
            activation="sigmoid",
        )

    @staticmethod
    def boxes_at(box_regression: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-specific deltas (P, (C + 1) * 4) -> each proposal's deltas (P, 4) for its label."""
        per_class = box_regression.view(len(labels), -1, 4)
        return per_class[torch.arange(len(labels), device=labels.device), labels]

    def detection_step(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, targets: list[dict[str, torch.Tensor]]
    ) -> DetectionStep:
        detector = self.adapter.detector
        rpn, roi_heads = detector.rpn, detector.roi_heads
        count, size = len(targets), self.adapter.input_size
        images = blank_images(head.classification[0], count, size)
        detector_targets = [
            {"boxes": t["boxes"], "labels": self.adapter.to_detector_labels(t["labels"])} for t in targets
        ]
        anchors = rpn.anchor_generator(images, pyramid)
        level_sizes = [o.shape[1] * o.shape[2] * o.shape[3] for o in head.classification]
        objectness, deltas = concat_box_prediction_layers(head.classification, head.regression)
        # The RPN's proposal counts depend on its `training` flag: these are training proposals.
        with self.adapter._detection_logic(training=True):
            # Faster R-CNN does not back-propagate through the proposals (torchvision detaches the deltas too).
            proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(count, -1, 4)
            boxes, _ = rpn.filter_proposals(proposals, objectness, images.image_sizes, level_sizes)
            anchor_labels, matched_gt_boxes = rpn.assign_targets_to_anchors(anchors, detector_targets)
            rpn_targets = rpn.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = rpn.compute_loss(objectness, deltas, anchor_labels, rpn_targets)
            sampled, _, sampled_labels, roi_targets = roi_heads.select_training_samples(boxes, detector_targets)
        labels = torch.cat(sampled_labels)
        roi = self.adapter.roi_outputs(pyramid, sampled)
        loss_classifier, loss_box_reg = fastrcnn_loss(roi.class_logits, roi.box_regression, sampled_labels, roi_targets)
        stacked_anchors = torch.stack(anchors)
        proposal_boxes = torch.cat(sampled)
        return DetectionStep(
            losses={
                "loss_objectness": loss_objectness,
                "loss_rpn_box_reg": loss_rpn_box_reg,
                "loss_classifier": loss_classifier,
                "loss_box_reg": loss_box_reg,
            },
            outputs={
                "dense": self.dense(head),
                "roi": Stage([roi.class_logits], [self.boxes_at(roi.box_regression, labels)], activation="softmax"),
            },
            targets={
                "dense": StageTargets(
                    positives=split_levels(torch.stack(anchor_labels) == 1, level_sizes),
                    boxes=split_levels(torch.stack(list(rpn_targets)), level_sizes),
                    shift_per_pixel=split_levels(
                        delta_shift_per_pixel(stacked_anchors, rpn.box_coder.weights), level_sizes
                    ),
                    box_scale=split_levels(torch.ones_like(stacked_anchors), level_sizes),  # deltas: relative
                ),
                "roi": StageTargets(
                    positives=[labels > 0],
                    boxes=[torch.cat(roi_targets)],
                    shift_per_pixel=[delta_shift_per_pixel(proposal_boxes, roi_heads.box_coder.weights)],
                    box_scale=[torch.ones_like(proposal_boxes)],
                ),
            },
            image_size=size,
            proposals=sampled,
            proposal_labels=labels,
        )

    def outputs_on(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, step: DetectionStep, scale: float = 1.0
    ) -> dict[str, Stage]:
        if step.proposals is None or step.proposal_labels is None:
            raise ValueError("a Faster R-CNN detection step carries the proposals its second stage was sampled on")
        size = round(step.image_size * scale)
        roi = self.adapter.roi_outputs(
            pyramid, [p * scale for p in step.proposals], [(size, size)] * len(step.proposals)
        )
        boxes = self.boxes_at(roi.box_regression, step.proposal_labels)
        return {"dense": self.dense(head), "roi": Stage([roi.class_logits], [boxes], activation="softmax")}
