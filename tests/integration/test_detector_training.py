"""torchvision's RetinaNet, FCOS and Faster R-CNN behind DetectorAdapter trained a few SGD steps on a fixed batch:
each loss term finite, the loss falling, the gradient reaching the backbone's first layer (tests/unit/test_detectors.py:
shapes, decoding, conventions)."""

from __future__ import annotations

import pytest
import torch

from edgecomp.models.detection.adapter import DetectorAdapter
from tests.helpers.detectors import LOSS_TERMS, first_backbone_weight, scene, torchvision_detector

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_steps(adapter: DetectorAdapter, steps: int) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Plain SGD on one fixed batch; returns the summed loss before each update and the last loss dict."""
    images, targets = scene()
    optimiser = torch.optim.SGD(adapter.parameters(), lr=0.01)
    adapter.train()
    losses = []
    for _ in range(steps):
        terms = adapter.loss(images, targets)
        total = sum(terms.values())
        optimiser.zero_grad()
        total.backward()
        if not losses:  # after the first backward: the gradient must reach the first layer of the backbone
            gradient = first_backbone_weight(adapter).grad
            assert gradient is not None and gradient.abs().sum() > 0
        optimiser.step()
        losses.append(total.item())
    return losses, terms


@pytest.mark.parametrize(
    ("family", "backbone", "steps"),
    [
        ("retinanet", "resnet18", 4),
        ("fcos", "resnet18", 4),
        ("faster_rcnn", "resnet18", 3),
        ("retinanet", "mobilenet_v2", 4),
        ("fcos", "mobilenet_v2", 4),
        ("faster_rcnn", "mobilenet_v2", 3),
    ],
)
def test_loss_falls_on_a_fixed_batch(family: str, backbone: str, steps: int) -> None:
    adapter = torchvision_detector(family, backbone)
    losses, terms = train_steps(adapter, steps)
    assert set(terms) == LOSS_TERMS[family]
    assert all(torch.isfinite(term) and term.dim() == 0 for term in terms.values())
    assert losses[-1] < losses[0], losses
