"""Post-training quantization of a detector (YOLOv8n, smoke_det): the FP16 and INT8 files of its exported network
shrink against the FP32 file, keep the head's outputs in FP32, stay close to the FP32 network, and are scored with
COCO metrics from their own outputs (decoded by the adapter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgecomp.config import build
from edgecomp.evaluate.coco_evaluator import deployed_detections
from edgecomp.evaluate.coco_metrics import METRIC_KEYS
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.models.checkpoint import load_weights
from tests.conftest import compose_config, train_then_compress

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, data_dir, trained):
    """smoke_det's YOLOv8n trained once, then compressed by ptq_fp16 and by ptq_int8 from its checkpoint."""
    common, trained, records = train_then_compress(
        trained, tmp_path_factory.mktemp("ptq_det"), data_dir, "smoke_det", ("ptq_fp16", "ptq_int8")
    )
    return common, trained, {"fp16": records["ptq_fp16"], "int8": records["ptq_int8"]}


def test_the_files_shrink_and_are_scored_with_coco_metrics_from_their_outputs(compressed):
    _, trained, records = compressed
    for precision, at_most in (("fp16", 0.55), ("int8", 0.35)):
        record = records[precision]
        artifact, baseline = Path(record["artifact"]), Path(record["baseline"]["artifact"])
        assert artifact.suffix == baseline.suffix == ".onnx"
        assert record["size_bytes"] == artifact.stat().st_size
        assert record["size_bytes"] <= at_most * record["baseline"]["size_bytes"], precision
        assert (record["runtime"]["runtime"], record["runtime"]["precision"]) == ("onnxruntime", precision)
        assert (record["baseline"]["runtime"]["runtime"], record["baseline"]["runtime"]["precision"]) == (
            "onnxruntime",
            "fp32",
        )
        assert set(record["metrics"]) == set(METRIC_KEYS) and record["metrics"]["map"] == record["metrics"]["map"]
        assert record["latency_ms"]["images"] == 8  # smoke_det's latency set, through the quantized file
        assert record["checkpoint"] == str(artifact)  # the quantizer's own file: nothing else was saved


def test_int8_keeps_the_head_outputs_in_fp32_and_stays_close_to_the_fp32_network(compressed):
    _, _, records = compressed
    record = records["int8"]
    model = onnx.load(record["artifact"])
    outputs = {output.name for output in model.graph.output}
    producers = [node for node in model.graph.node if outputs.intersection(node.output)]
    # every head output made by a float convolution (a quantized output would come from a DequantizeLinear)
    assert len(producers) == 6 and {node.op_type for node in producers} == {"Conv"}
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)  # the rest is INT8
    compression = record["compression"]
    cosine = compression["calibration_output_cosine"]
    assert set(cosine) == {"mean_minmax", "minmax"} and compression["calibrate_method_used"] in cosine
    assert cosine[compression["calibrate_method_used"]] == max(cosine.values()) > 0.9


def test_the_int8_file_decodes_to_detections_close_to_the_fp32_files(compressed):
    common, trained, records = compressed
    cfg = compose_config("compress", common[:1])
    model = load_weights(build(cfg.model), trained["checkpoint"]).eval()
    model.score_threshold = 0.0  # every candidate box, so that both files give their full quota
    device = build(cfg.device)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    fp32 = deployed_detections(model, OnnxRuntime().load(records["int8"]["baseline"]["artifact"], device), images)
    int8 = deployed_detections(model, OnnxRuntime().load(records["int8"]["artifact"], device), images)
    for expected, got in zip(fp32, int8, strict=True):
        assert len(got["boxes"]) == len(expected["boxes"]) == model.max_detections
        # the best-scoring detections: each INT8 score within 0.1 of the FP32 one at the same rank
        assert np.allclose(got["scores"][:10].numpy(), expected["scores"][:10].numpy(), atol=0.1)
