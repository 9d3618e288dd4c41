"""Detectors deployed as files: the exported network is the adapter's `forward` (raw per-level head outputs), and
the adapter's `decode` turns a runtime's outputs into the detections its eager `predict` gives.

Random weights at 128 px with every score kept (threshold 0), so that each image has its full quota of
detections to compare: the comparison is detection by detection, not a metric that could hide differences.
"""

from __future__ import annotations

import pytest
import torch

from edgecomp.config import build
from edgecomp.evaluate.coco_evaluator import CocoEvaluator, deployed_detections
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime
from tests.conftest import compose_config

SIZE = 128
DECODING = ("retinanet", "fcos", "yolov8n")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def detector(name: str, data_dir=None):
    overrides = ["experiment=smoke_det", f"model={name}", f"dataset.image_size={SIZE}"]
    if data_dir is not None:
        overrides.append(f"paths.data={data_dir}")
    cfg = compose_config("evaluate", overrides)
    torch.manual_seed(0)
    model = build(cfg.model).eval()
    if name in ("retinanet", "fcos"):
        model.detector.score_thresh = 0.0  # keep every candidate: each image gets max_detections
    return cfg, model


@pytest.mark.parametrize("name", ["retinanet", "fcos"])
def test_decoding_the_forward_outputs_is_torchvisions_own_inference(name):
    """`predict` = `decode(forward(images))` gives exactly what the torchvision model's own eval-mode call gives
    (its transform, head, anchors, post-processing), on the same weights."""
    _, model = detector(name)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ours = model.predict(images)
    with torch.no_grad(), model._detection_logic(training=False):
        reference = model.detector(list(images))
    for got, expected in zip(ours, reference, strict=True):
        assert len(got["boxes"]) == model.detector.detections_per_img
        torch.testing.assert_close(got["boxes"], expected["boxes"])
        torch.testing.assert_close(got["scores"], expected["scores"])
        assert torch.equal(got["labels"], expected["labels"])


def test_outputs_rebuilt_from_their_flat_sequence_are_the_forward_outputs():
    _, model = detector("fcos")
    with torch.no_grad():
        outputs = model(torch.rand(1, 3, SIZE, SIZE))
    flat = [*outputs.classification, *outputs.regression, *outputs.centerness]
    rebuilt = model.outputs_from_tensors(flat)
    assert type(rebuilt) is type(outputs)
    for field in ("classification", "regression", "centerness"):
        assert all(a is b for a, b in zip(getattr(rebuilt, field), getattr(outputs, field), strict=True))
    with pytest.raises(ValueError, match="expected a multiple of 3 tensors"):
        model.outputs_from_tensors(flat[:-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each decoding family exported once (the dynamo exporter takes seconds per model)."""
    folder = tmp_path_factory.mktemp("onnx")
    return {name: export_onnx(detector(name)[1], folder / f"{name}.onnx", SIZE) for name in DECODING}


@pytest.mark.parametrize("name", DECODING)
def test_onnx_runtime_outputs_decode_to_the_eager_detections(name, exported):
    cfg, model = detector(name)
    device = build(cfg.device)
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    eager = model.predict(images)
    deployed = deployed_detections(model, OnnxRuntime().load(exported[name], device), images)
    for got, expected in zip(deployed, eager, strict=True):
        assert len(got["boxes"]) == len(expected["boxes"]) > 0
        # the same detections, each matched to one of the eager ones: detections whose scores tie to 1e-4 (a randomly
        # initialised head scores many alike) may come in another order from ONNX Runtime's kernels (seen on AVX2)
        unmatched = list(range(len(expected["boxes"])))
        for label, score, box in zip(got["labels"], got["scores"], got["boxes"], strict=True):
            match = next(
                (
                    j
                    for j in unmatched
                    if expected["labels"][j] == label
                    and abs(float(expected["scores"][j] - score)) <= 1e-4 + 1e-4 * float(score)
                    and float((expected["boxes"][j] - box).abs().max()) <= 1e-2 + 1e-4 * float(box.abs().max())
                ),
                None,
            )  # the box tolerance: pixels of a 128 px frame
            assert match is not None, (label, score, box)
            unmatched.remove(match)


@pytest.mark.parametrize("name", DECODING)
def test_coco_metrics_of_the_deployed_file_match_the_eager_networks(name, exported, data_dir):
    """The evaluator scores what the predictor runs: ONNX Runtime on the exported file and torch eager on the
    module give the same COCO metrics on the smoke_det evaluation split."""
    cfg, model = detector(name, data_dir)
    datamodule = build(cfg.dataset.datamodule)
    datamodule.setup("fit")
    device = build(cfg.device)
    evaluator = CocoEvaluator()
    on_onnx = evaluator(model, OnnxRuntime().load(exported[name], device), datamodule, device)
    on_torch = evaluator(model, TorchEagerRuntime().load(model, device), datamodule, device)
    assert on_onnx.keys() == on_torch.keys()
    for key, value in on_torch.items():
        if value == value:  # NaN: no ground truth in that size range, on both sides
            assert on_onnx[key] == pytest.approx(value, abs=0.002), key
        else:
            assert on_onnx[key] != on_onnx[key], key
