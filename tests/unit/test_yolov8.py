"""Ultralytics YOLOv8 behind DetectorAdapter: the views, the loss, decoding, scales, and the licence boundary."""

from __future__ import annotations

import pytest
import torch

from edgecomp.models.detection.yolov8 import YOLOv8Adapter

NUM_CLASSES = 3
SIZE = 96


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images = torch.full((2, 3, SIZE, SIZE), 0.1)
    images[0, :, 10:40, 20:60] = 0.9
    images[1, 0, 50:90, 5:45] = 0.9
    targets = [
        {"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[5.0, 50.0, 45.0, 90.0]]), "labels": torch.tensor([2])},
    ]
    return images, targets


def test_views_follow_the_adapter_interface():
    torch.manual_seed(0)
    adapter = YOLOv8Adapter(NUM_CLASSES, SIZE, "n")
    images, _ = scene()
    features = adapter.features(images)
    assert features.last_stage.shape == (2, 256, SIZE // 32, SIZE // 32)  # SPPF, stride 32
    assert [tuple(level.shape) for level in features.pyramid] == [
        (2, 64, SIZE // 8, SIZE // 8),
        (2, 128, SIZE // 16, SIZE // 16),
        (2, 256, SIZE // 32, SIZE // 32),
    ]
    outputs = adapter(images)
    assert [c.shape[1] for c in outputs.classification] == [NUM_CLASSES] * 3
    assert [r.shape[1] for r in outputs.regression] == [4 * 16] * 3  # four sides x 16 DFL bins
    # The views are Ultralytics' own network: its Detect head in training mode returns the same raw outputs.
    network = adapter.network.train()
    raw = network(images)
    ours = adapter._raw_predictions(features.pyramid)
    assert torch.allclose(raw["scores"], ours["scores"]) and torch.allclose(raw["boxes"], ours["boxes"])


def test_loss_terms_and_predictions():
    torch.manual_seed(0)
    adapter = YOLOv8Adapter(NUM_CLASSES, SIZE, "n", max_detections=20)
    images, targets = scene()
    terms = adapter.train().loss(images, targets)
    assert set(terms) == {"box", "cls", "dfl"}
    assert all(term.dim() == 0 and torch.isfinite(term) and term > 0 for term in terms.values())
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    no_objects = adapter.loss(images, empty)
    assert float(no_objects["box"]) == 0.0 and float(no_objects["cls"]) > 0  # only background to learn

    predictions = adapter.eval().predict(images)
    assert len(predictions) == 2
    for prediction in predictions:
        boxes, scores, labels = prediction["boxes"], prediction["scores"], prediction["labels"]
        assert 0 < len(boxes) <= 20 and labels.dtype == torch.int64
        assert 0 <= int(labels.min()) and int(labels.max()) < NUM_CLASSES
        assert (boxes[:, 2:] >= boxes[:, :2]).all() and 0 <= float(scores.min()) and float(scores.max()) <= 1


def test_scales_grow_and_bad_settings_are_refused():
    params = {scale: sum(p.numel() for p in YOLOv8Adapter(80, 640, scale).parameters()) for scale in "nsm"}
    # Ultralytics' published sizes at 80 classes: 3.2 M, 11.2 M, 25.9 M.
    assert params["n"] == pytest.approx(3.16e6, rel=0.02)
    assert params["s"] == pytest.approx(11.17e6, rel=0.02)
    assert params["m"] == pytest.approx(25.9e6, rel=0.02)
    with pytest.raises(ValueError, match="scale must be one of"):
        YOLOv8Adapter(NUM_CLASSES, SIZE, "xl")
    with pytest.raises(ValueError, match="divisible by its largest stride 32"):
        YOLOv8Adapter(NUM_CLASSES, 100, "n")
