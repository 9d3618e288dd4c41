"""The interface every detector family implements for edgecomp's detection pipeline and its distillers.

Conventions (the data pipeline establishes them before a batch reaches an adapter):
- images: a float batch (N, 3, S, S) in [0, 1], S = the adapter's `input_size` (resized or letterboxed by the
  data pipeline; the adapter normalises them itself);
- boxes: (x1, y1, x2, y2) in pixels of that S x S frame;
- labels: contiguous 0..num_classes-1 (the data pipeline maps a dataset's category ids to them and back). A family
  that reserves 0 for background (Faster R-CNN) shifts internally; nothing outside the adapter sees it.

What the distillers need (ScaleKD, FitNet, output KD) is exposed separately: the backbone's last-stage feature,
the pyramid (neck) features, and the head's raw per-level outputs. `forward` is the deployable network alone
(normalisation, backbone, neck, head: no anchor decoding, NMS or resizing), which latency and FLOPs measure, and
which is exported; `decode` turns its outputs into detections (anchor or grid decoding, score threshold, NMS), so
the outputs of a deployed file (rebuilt by `outputs_from_tensors`) are scored exactly as the eager network's are:
`predict(images)` is `decode(forward(images))`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class DetectorFeatures:
    last_stage: torch.Tensor  # the backbone's last stage (e.g. ResNet C5), (N, C, h, w)
    pyramid: list[torch.Tensor]  # the neck's outputs, finest first (e.g. FPN P3..P7), each (N, C_p, h_l, w_l)


@dataclass
class HeadOutputs:
    """The head's raw outputs per pyramid level, before any decoding: for a dense detector the classification
    logits (N, A*K, h_l, w_l) and box regression (N, A*4, h_l, w_l); for a two-stage detector the RPN's
    objectness and box deltas (the second stage works on proposals, see the family's adapter)."""

    classification: list[torch.Tensor]
    regression: list[torch.Tensor]


class DetectorAdapter(nn.Module, ABC):
    # What `forward` returns (HeadOutputs or a family's subclass of it): how `outputs_from_tensors` rebuilds it.
    head_outputs_class: type[HeadOutputs] = HeadOutputs
    # Whether `decode` turns `forward`'s outputs into the family's detections. A two-stage detector's second stage
    # runs on proposals, outside `forward`: its detections need the eager network (`predict`), not a deployed file.
    decodes_forward_outputs: bool = True
    # Where a pretrained file's weights go (edgecomp.models.pretrained): the state_dict prefixes of the backbone,
    # which a file must mostly give, and the (file prefix, model prefix) renamings that put another library's names
    # for this network onto the adapter's (edgecomp.models.weight_matching).
    backbone_prefixes: tuple[str, ...] = ()
    weight_file_prefixes: tuple[tuple[str, str], ...] = ()
    # The buffers `register_normalisation` registers.
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, num_classes: int, input_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_size = input_size

    @abstractmethod
    def features(self, images: torch.Tensor) -> DetectorFeatures:
        """Backbone and neck on a batch of images (normalised inside)."""

    @abstractmethod
    def head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        """The detection head's raw outputs on pyramid features (the features' own, or a distiller's)."""

    @abstractmethod
    def loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The family's own training loss terms (each a scalar; the pipeline sums them) for `targets`: one dict
        per image with "boxes" (M, 4) and "labels" (M,) int64, as in the conventions above."""

    def decode(self, outputs: HeadOutputs) -> list[dict[str, torch.Tensor]]:
        """Detections per image from `forward`'s outputs (this network's, or a deployed file's): "boxes" (D, 4),
        "scores" (D,), "labels" (D,) int64, with the family's usual score threshold and NMS, at most
        `max_detections` per image."""
        raise NotImplementedError(
            f"{type(self).__name__} does not decode its forward() outputs (decodes_forward_outputs is False)"
        )

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Decoded detections per image (see `decode`), from the eager network."""
        return self.decode(self(images))

    def outputs_from_tensors(self, tensors: Sequence[torch.Tensor]) -> HeadOutputs:
        """`forward`'s outputs rebuilt from their flat sequence (edgecomp.models.outputs.flat_tensors' order: each
        field's levels in turn), as a deployed file returns them."""
        fields = dataclasses.fields(self.head_outputs_class)
        if not tensors or len(tensors) % len(fields):
            raise ValueError(
                f"{type(self).__name__}: expected a multiple of {len(fields)} tensors ({', '.join(f.name for f in fields)}"
                f" per level), got {len(tensors)}"
            )
        levels = len(tensors) // len(fields)
        return self.head_outputs_class(
            **{field.name: list(tensors[i * levels : (i + 1) * levels]) for i, field in enumerate(fields)}
        )

    def register_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The per-channel mean and std (of [0, 1] RGB) `normalise` applies: buffers that follow the adapter's device,
        not persistent (constants, kept out of checkpoints)."""
        self.register_buffer("pixel_mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """A batch in [0, 1] normalised with the mean and std given to `register_normalisation`."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a batch (N, 3, H, W), got shape {tuple(images.shape)}")
        return (images - self.pixel_mean) / self.pixel_std

    def _check_images(self, images: torch.Tensor) -> None:
        """A batch of another size would be silently rescaled (torchvision) or mis-scored: refuse it instead."""
        expected = (3, self.input_size, self.input_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected or not images.is_floating_point():
            raise ValueError(
                f"images must be a float batch (N, {', '.join(map(str, expected))}) in [0, 1], "
                f"got {images.dtype} {tuple(images.shape)}"
            )

    def _check_targets(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> None:
        """A label outside 0..C-1 would index past the classifier in a family's loss, with an unhelpful error."""
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        for index, target in enumerate(targets):
            boxes, labels = target["boxes"], target["labels"]
            if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != boxes.shape[:1]:
                raise ValueError(
                    f"target {index}: expected boxes (M, 4) and labels (M,), got {tuple(boxes.shape)} and "
                    f"{tuple(labels.shape)}"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(f"target {index}: labels must be in 0..{self.num_classes - 1}, got {labels.tolist()}")

    def forward(self, images: torch.Tensor) -> HeadOutputs:
        """The deployable network: what latency and FLOPs are measured on."""
        return self.head(self.features(images).pyramid)
