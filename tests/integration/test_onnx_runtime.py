"""ONNX export and the ONNX Runtime backend, on a real timm model (no mocks: ORT runs the exported file).

The model is the session's random MobileNetV3-Small, exported once per session (the `random_mobilenet` fixture: the
dynamo exporter takes ~7 s, the rest of the file a few seconds).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgecomp.errors import CheckpointError, DeviceError
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.latency import LatencyProtocol, measure_latency
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime, OnnxRuntimePredictor
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime
from edgecomp.evaluate.size import weights_bytes

INPUT = 64


@pytest.fixture(scope="module")
def exported(random_mobilenet):
    return random_mobilenet  # MobileNetV3-Small and its file at INPUT px


def cpu_device(threads: int | None = 1) -> TargetDevice:
    return TargetDevice("cpu", "cpu", OnnxRuntime(), "fp32", 1, threads)


def test_ort_logits_match_torch_eager_at_another_batch_size(exported):
    model, path = exported
    images = torch.randn(3, 3, INPUT, INPUT)  # exported with a batch of 2: 3 only runs if the batch is dynamic
    predictor = OnnxRuntime().load(path, cpu_device())
    prepared = predictor.prepare(images)
    assert prepared.dtype == np.float32 and prepared.flags["C_CONTIGUOUS"]
    logits = predictor.to_logits(predictor(prepared))
    eager = TorchEagerRuntime().load(model, cpu_device())
    expected = eager.to_logits(eager(eager.prepare(images)))
    assert logits.dtype == torch.float32 and logits.shape == (3, 10)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_file_is_one_self_contained_onnx_with_a_dynamic_batch(exported):
    model, path = exported
    # Atomic write and no external data: the directory holds the .onnx file alone, no temporary, no weights file.
    assert [p.name for p in path.parent.iterdir()] == ["fp32.onnx"]
    state_dict_size = len(weights_bytes(model))
    assert abs(path.stat().st_size - state_dict_size) <= 0.10 * state_dict_size
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [3, INPUT, INPUT]


def test_measure_latency_runs_on_the_ort_predictor(exported, monkeypatch):
    _, path = exported
    predictor = OnnxRuntime().load(path, cpu_device())
    batches = []
    run = predictor.session.run

    def counted_run(outputs, feeds):  # what ONNX Runtime is asked to compute, pass by pass
        batches.append(feeds[predictor.input_name])
        return run(outputs, feeds)

    monkeypatch.setattr(predictor.session, "run", counted_run)
    stats = measure_latency(predictor, torch.randn(4, 3, INPUT, INPUT), 2, LatencyProtocol(images=4, runs=2, warmup=1))
    # 1 warm-up and 2 timed passes over the 4 images in batches of 2: 6 runs of the session on prepared arrays
    assert [(batch.shape, batch.dtype) for batch in batches] == [((2, 3, INPUT, INPUT), np.float32)] * 6
    passes = stats["passes_ms_per_image"]
    assert len(passes) == 2 and all(math.isfinite(p) for p in passes)
    assert stats["median"] == pytest.approx(sum(passes) / 2) and stats["mean"] == pytest.approx(sum(passes) / 2)


@pytest.mark.parametrize("threads", [1, 2])
def test_session_uses_the_device_thread_count(exported, threads):
    _, path = exported
    predictor = OnnxRuntime().load(path, cpu_device(threads))
    assert isinstance(predictor, OnnxRuntimePredictor)
    options = predictor.session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert predictor.session.get_providers() == ["CPUExecutionProvider"]


def test_without_layout_optimisations_the_session_stops_at_the_extended_level(exported):
    _, path = exported
    predictor = OnnxRuntime(layout_optimizations=False).load(path, cpu_device())
    options = predictor.session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED


def test_a_module_is_not_an_artifact(exported):
    model, _ = exported
    with pytest.raises(TypeError, match="export_onnx"):
        OnnxRuntime().load(model, cpu_device())


def test_missing_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(CheckpointError, match="nope.onnx"):
        OnnxRuntime().load(missing, cpu_device())


def test_cuda_without_the_cuda_provider_is_a_device_error(exported):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    _, path = exported
    # A CPU-built device switched to cuda: TargetDevice itself refuses cuda without a torch GPU, and what is
    # tested here is the runtime's own check of ORT's providers.
    device = cpu_device()
    device.accelerator = "cuda"
    with pytest.raises(DeviceError, match="CPUExecutionProvider"):
        OnnxRuntime().load(path, device)
