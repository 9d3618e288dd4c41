"""torchvision's RetinaNet, FCOS and Faster R-CNN behind DetectorAdapter: shapes, loss terms, decoding, conventions
(tests/integration/test_detector_training.py: the loss falls over a few steps).

Everything runs at 64 x 64 (72 where a size that is not a multiple of 32 matters) on one thread: on a machine whose
cores are shared, two threads that wait for each other are several times slower than one.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.misc import FrozenBatchNorm2d

from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.detection.backbones import BACKBONES, build_fpn_backbone, pyramid_sizes
from edgecomp.models.detection.torchvision_dense import FCOSHeadOutputs
from tests.helpers.detectors import FAMILIES, LOSS_TERMS, NUM_CLASSES, SIZE, scene, torchvision_detector

LAST_STAGE_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "mobilenet_v2": 1280}
# Per-level head channels (classification, regression): anchors x classes and anchors x 4 (Faster R-CNN: the RPN).
HEAD_CHANNELS = {"retinanet": (9 * NUM_CLASSES, 9 * 4), "fcos": (NUM_CLASSES, 4), "faster_rcnn": (3, 3 * 4)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def any_batchnorm(adapter: DetectorAdapter) -> nn.BatchNorm2d:
    return next(module for module in adapter.detector.backbone.body.modules() if isinstance(module, nn.BatchNorm2d))


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_features_shapes(family: str, backbone: str) -> None:
    adapter = torchvision_detector(family, backbone).eval()
    images, _ = scene()
    with torch.no_grad():
        features = adapter.features(images)
        outputs = adapter(images)
    sizes = pyramid_sizes(SIZE, adapter.extra_levels)
    assert len(sizes) == 5

    assert features.last_stage.shape == (2, LAST_STAGE_CHANNELS[backbone], SIZE // 32, SIZE // 32)
    assert [tuple(level.shape) for level in features.pyramid] == [(2, 256, side, side) for side in sizes]

    classification_channels, regression_channels = HEAD_CHANNELS[family]
    assert [tuple(x.shape) for x in outputs.classification] == [(2, classification_channels, s, s) for s in sizes]
    assert [tuple(x.shape) for x in outputs.regression] == [(2, regression_channels, s, s) for s in sizes]
    if family == "fcos":
        assert isinstance(outputs, FCOSHeadOutputs)
        assert [tuple(x.shape) for x in outputs.centerness] == [(2, 1, s, s) for s in sizes]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbones_train_from_scratch(backbone: str) -> None:
    """Random init must train everything: no frozen layer, no FrozenBatchNorm2d (torchvision's fine-tuning
    defaults)."""
    for extra_levels in ("p6p7", "maxpool"):
        network, out_channels = build_fpn_backbone(backbone, extra_levels)
        assert out_channels == 256
        assert all(parameter.requires_grad for parameter in network.parameters())
        assert not any(isinstance(module, FrozenBatchNorm2d) for module in network.modules())
        assert any(isinstance(module, nn.BatchNorm2d) for module in network.body.modules())
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_fpn_backbone("vgg16", "p6p7")


@pytest.mark.parametrize("family", FAMILIES)
def test_torchvision_transform_only_normalises(family: str) -> None:
    """The torchvision model must see exactly what features()/forward() see: no resize, no padding (72 is not a
    multiple of torchvision's default padding of 32)."""
    adapter = torchvision_detector(family, input_size=72)
    images = torch.rand(2, 3, 72, 72)
    for training in (True, False):
        adapter.detector.transform.training = training
        batch, _ = adapter.detector.transform(list(images))
        assert torch.equal(batch.tensors, adapter.normalise(images))
        assert batch.image_sizes == [(72, 72), (72, 72)]


@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_dense_head_is_torchvisions_head_per_level(family: str) -> None:
    """head()'s per-level maps, flattened the way torchvision flattens them, are torchvision's head output."""
    adapter = torchvision_detector(family).eval()
    images, _ = scene()
    with torch.no_grad():
        pyramid = adapter.features(images).pyramid
        ours = adapter.head(pyramid)
        theirs = adapter.detector.head(pyramid)

    def flatten(levels: list[torch.Tensor], per_anchor: int) -> torch.Tensor:
        # (N, A*K, h, w) -> (N, h*w*A, K), levels concatenated: torchvision's layout.
        flat = []
        for level in levels:
            n, _, h, w = level.shape
            flat.append(level.view(n, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, per_anchor))
        return torch.cat(flat, dim=1)

    torch.testing.assert_close(flatten(ours.classification, NUM_CLASSES), theirs["cls_logits"])
    torch.testing.assert_close(flatten(ours.regression, 4), theirs["bbox_regression"])
    if family == "fcos":
        torch.testing.assert_close(flatten(ours.centerness, 1), theirs["bbox_ctrness"])


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_follows_the_conventions(family: str) -> None:
    """Threshold 0 so that a random network returns detections to check (torchvision drops scores <= threshold)."""
    adapter = torchvision_detector(family, score_threshold=0.0, max_detections=20).eval()
    images, _ = scene()
    predictions = adapter.predict(images)
    assert len(predictions) == 2
    for prediction in predictions:
        boxes, scores, labels = prediction["boxes"], prediction["scores"], prediction["labels"]
        assert 0 < len(boxes) <= 20 and boxes.shape == (len(boxes), 4)
        assert scores.shape == labels.shape == (len(boxes),)
        assert labels.dtype == torch.int64
        assert 0 <= labels.min() and labels.max() <= NUM_CLASSES - 1
        assert 0 <= scores.min() and scores.max() <= 1
        assert (boxes >= 0).all() and (boxes <= SIZE).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert not adapter.training and not adapter.detector.training


def test_faster_rcnn_second_stage_reproduces_predict() -> None:
    """features() + the RPN's proposals + roi_outputs(), decoded by torchvision, give predict()'s detections with
    labels one higher (torchvision's background is 0): the second stage sees the same pyramid under the names its
    RoI pooling selects, and predict() shifts the labels back."""
    adapter = torchvision_detector("faster_rcnn", score_threshold=0.0).eval()
    images, _ = scene()
    sizes = [(SIZE, SIZE)] * 2
    with torch.no_grad():
        features = adapter.features(images)
        named_pyramid = dict(zip(adapter.pyramid_level_names, features.pyramid, strict=True))
        proposals, _ = adapter.detector.rpn(ImageList(images, sizes), named_pyramid)
        outputs = adapter.roi_outputs(features, proposals)
        boxes, _, labels = adapter.detector.roi_heads.postprocess_detections(
            outputs.class_logits, outputs.box_regression, proposals, sizes
        )
    total = sum(len(p) for p in proposals)
    assert outputs.class_logits.shape == (total, NUM_CLASSES + 1)
    assert outputs.box_regression.shape == (total, (NUM_CLASSES + 1) * 4)
    predictions = adapter.predict(images)
    for prediction, image_boxes, image_labels in zip(predictions, boxes, labels, strict=True):
        torch.testing.assert_close(prediction["boxes"], image_boxes)
        assert torch.equal(prediction["labels"], image_labels - 1)


def test_faster_rcnn_shifts_target_labels_past_background() -> None:
    adapter = torchvision_detector("faster_rcnn")
    images, targets = scene()
    seen = []
    hook = adapter.detector.roi_heads.register_forward_pre_hook(lambda module, args: seen.append(args[3]))
    adapter.loss(images, targets)
    hook.remove()
    assert [t["labels"].tolist() for t in seen[0]] == [(t["labels"] + 1).tolist() for t in targets]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_adapter_mode_governs_batchnorm_and_the_method_what_is_computed(family: str) -> None:
    """loss() in eval mode (validation, or a frozen backbone) returns the losses without moving BatchNorm's running
    statistics; in train mode it moves them; predict() in train mode still decodes. Modes are restored."""
    adapter = torchvision_detector(family)
    images, targets = scene()
    batchnorm = any_batchnorm(adapter)
    before = batchnorm.running_mean.clone()

    adapter.eval()
    with torch.no_grad():
        terms = adapter.loss(images, targets)
    assert set(terms) == LOSS_TERMS[family]
    assert torch.equal(batchnorm.running_mean, before)
    assert not any(module.training for module in adapter.modules())

    adapter.train()
    with torch.no_grad():
        adapter.loss(images, targets)
        predictions = adapter.predict(images)
    assert not torch.equal(batchnorm.running_mean, before)
    assert isinstance(predictions, list) and set(predictions[0]) == {"boxes", "scores", "labels"}
    assert all(module.training for module in adapter.modules())


def test_bad_inputs_are_refused_with_a_message() -> None:
    adapter = torchvision_detector("retinanet")
    images, targets = scene()
    with pytest.raises(ValueError, match="images must be a float batch"):
        adapter.predict(torch.rand(1, 3, 32, 32))  # torchvision would silently rescale it to 64
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        adapter.loss(images, [targets[0], {"boxes": targets[1]["boxes"], "labels": torch.tensor([0, 3])}])
    with pytest.raises(ValueError, match="2 images but 1 targets"):
        adapter.loss(images, targets[:1])
