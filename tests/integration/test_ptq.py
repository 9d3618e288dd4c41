"""Post-training quantization to ONNX: the FP16 and INT8 files really shrink, run under ONNX Runtime, agree with
the FP32 network they came from, and compress.py records them against the same model exported to FP32 ONNX."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from edgecomp.compress.quantization.ptq_int8 import Int8Quantization, depthwise_convolutions
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from tests.conftest import compose_config, train_then_compress

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, data_dir, trained):
    """The smoke baseline trained once, then compressed by ptq_fp16 and by ptq_int8 from its checkpoint (and the
    overrides the runs shared, under "overrides")."""
    common, _, records = train_then_compress(
        trained, tmp_path_factory.mktemp("ptq"), data_dir, "smoke", ("ptq_fp16", "ptq_int8")
    )
    return {"fp16": records["ptq_fp16"], "int8": records["ptq_int8"], "overrides": common}


def test_the_files_shrink_against_the_baseline_exported_to_the_same_format(compressed):
    for precision, at_most in (("fp16", 0.55), ("int8", 0.35)):
        record = compressed[precision]
        assert record["compressor"] == f"ptq_{precision}"
        artifact, baseline = Path(record["artifact"]), Path(record["baseline"]["artifact"])
        assert artifact.suffix == baseline.suffix == ".onnx" and artifact.is_file() and baseline.is_file()
        assert record["size_bytes"] == artifact.stat().st_size
        assert record["baseline"]["size_bytes"] == baseline.stat().st_size
        assert record["size_bytes"] <= at_most * record["baseline"]["size_bytes"], precision
        assert 0 < record["gzip_bytes"] < record["baseline"]["gzip_bytes"]


def test_evaluating_a_quantized_file_again_reproduces_its_metrics(compressed, tmp_path):
    """`evaluate.py artifact=` runs the file a PTQ run wrote as it ran there: the same metrics and intervals, the same
    precision read from the file's operators, and a record whose artifact is that file."""
    from edgecomp.pipelines import evaluate

    for precision in ("fp16", "int8"):
        record = compressed[precision]
        overrides = [*compressed["overrides"], f"paths.results={tmp_path}", f"artifact={record['artifact']}"]
        again = evaluate.run(compose_config("evaluate", overrides))
        assert again["metrics"] == record["metrics"] and again["metrics_ci95"] == record["metrics_ci95"]
        assert again["artifact"] == record["artifact"] and again["runtime"]["precision"] == precision
        assert again["size_bytes"] == record["size_bytes"] and again["params"] is None and again["checkpoint"] is None


def test_the_record_says_what_ran_and_what_it_cost(compressed):
    for precision in ("fp16", "int8"):
        record = compressed[precision]
        assert record["runtime"]["runtime"] == "onnxruntime" and record["runtime"]["precision"] == precision
        assert record["baseline"]["runtime"]["runtime"] == "onnxruntime"
        assert record["baseline"]["runtime"]["precision"] == "fp32"
        assert record["compression"]["precision"] == precision
        # Both sides timed under the smoke protocol (16 images, 10 runs), against each other in its 5 alternating
        # rounds of 2 timed passes each (after 1 warm-up each round).
        for latency in (record["latency_ms"], record["baseline"]["latency_ms"]):
            assert (latency["images"], latency["runs"], latency["warmup"], latency["rounds"]) == (16, 10, 1, 5)
            assert len(latency["passes_ms_per_image"]) == 10
        # The ratio is the geometric mean of the per-round ratios of the two sides' medians, recomputed here from the
        # passes the record holds, with the t interval's verdict.
        rounds = [np.median(np.reshape(side["latency_ms"]["passes_ms_per_image"], (5, 2)), axis=1)
                  for side in (record, record["baseline"])]  # fmt: skip
        logs = np.log(rounds[0] / rounds[1])
        paired = record["vs_baseline"]["latency"]
        assert paired["ratio"] == pytest.approx(np.exp(logs.mean())) == record["vs_baseline"]["latency_ratio"]
        half = 2.776445 * logs.std(ddof=1) / np.sqrt(5)  # t(0.975, 4 df)
        assert paired["ci95"] == pytest.approx([np.exp(logs.mean() - half), np.exp(logs.mean() + half)], rel=1e-5)
        low, high = paired["ci95"]
        assert paired["rounds"] == 5
        assert paired["verdict"] == ("faster" if high < 1 else "slower" if low > 1 else "same within noise")
    assert compressed["int8"]["compression"]["calib_images"] == 128


def initializer_elements(path: str) -> Counter:
    """How many weight elements the ONNX file stores in each data type."""
    counts = Counter()
    for tensor in onnx.load(path).graph.initializer:
        counts[onnx.TensorProto.DataType.Name(tensor.data_type)] += int(np.prod(tensor.dims))
    return counts


def test_the_files_store_their_weights_in_the_precision_they_are_recorded_in(compressed):
    """The size ratio could also come from dropping weights: each file holds its FP32 baseline's weights, as FP16
    (every one) or as INT8 (beside them only their quantization scales and biases)."""
    for precision in ("fp16", "int8"):
        record = compressed[precision]
        fp32 = initializer_elements(record["baseline"]["artifact"])
        assert fp32["FLOAT"] > 1_000_000 and not fp32["FLOAT16"] and not fp32["INT8"]
        quantized = initializer_elements(record["artifact"])
        if precision == "fp16":
            assert quantized["FLOAT16"] == fp32["FLOAT"] and not quantized["FLOAT"]
        else:
            assert quantized["INT8"] >= 0.95 * fp32["FLOAT"] and quantized["FLOAT"] < 0.05 * fp32["FLOAT"]


def test_the_quantized_files_compute_what_their_fp32_baseline_computes(compressed):
    """On the same images, the FP16 file's logits are its FP32 baseline's to FP16 rounding; the INT8 file's,
    calibrated on the training images, follow them closely."""
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = {}
    for precision in ("fp16", "int8"):
        record = compressed[precision]
        logits[precision] = run_onnx(Path(record["artifact"]), images)
        logits[f"{precision} baseline"] = run_onnx(Path(record["baseline"]["artifact"]), images)
    fp16, reference = logits["fp16"], logits["fp16 baseline"]
    assert np.abs(fp16 - reference).max() <= 0.01 * np.abs(reference).max()
    assert np.array_equal(fp16.argmax(1), reference.argmax(1))
    assert np.corrcoef(logits["int8 baseline"].ravel(), logits["int8"].ravel())[0, 1] > 0.9


@pytest.fixture(scope="module")
def exported(tmp_path_factory, random_mobilenet):
    """The session's random MobileNetV3-Small and its FP32 file at 64 px, and a folder for what a test makes of it."""
    model, fp32 = random_mobilenet
    return model, fp32, tmp_path_factory.mktemp("onnx")


def run_onnx(path: Path, images: torch.Tensor) -> np.ndarray:
    device = SimpleNamespace(precision="fp32", accelerator="cpu", threads=1, name="cpu")
    predictor = OnnxRuntime().load(path, device)
    return predictor(predictor.prepare(images))


@pytest.mark.parametrize("exclude_depthwise", [False, True])
def test_int8_logits_follow_the_fp32_network(exported, exclude_depthwise):
    """Calibrated on images like the ones it is run on, the INT8 file's logits stay close to the FP32 file's: a
    broken calibration or a wrong scale would scatter them."""
    model, fp32, folder = exported
    generator = torch.Generator().manual_seed(0)
    calibration, images = torch.rand(32, 3, 64, 64, generator=generator), torch.rand(8, 3, 64, 64, generator=generator)
    int8 = folder / f"int8-{exclude_depthwise}.onnx"
    Int8Quantization("ptq_int8", calib_images=32, exclude_depthwise=exclude_depthwise).quantize_file(
        fp32, int8, calibration
    )
    reference, quantized = run_onnx(fp32, images), run_onnx(int8, images)
    with torch.no_grad():
        assert np.allclose(reference, model(images).numpy(), atol=1e-4)  # the FP32 file is the network
    correlation = np.corrcoef(reference.ravel(), quantized.ravel())[0, 1]
    assert correlation > 0.95, correlation
    graph = onnx.load(str(int8)).graph
    quantized_convs = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    assert quantized_convs, "no quantized tensors in the INT8 graph"
    if exclude_depthwise:
        assert depthwise_convolutions(onnx.load(str(int8)))  # still there, in FP32


@pytest.mark.parametrize("calibrate_method", ["mean_minmax", "minmax"])
def test_activation_ranges_are_the_mean_of_the_per_image_ranges_by_default(tmp_path, calibrate_method):
    """mean_minmax (the default) sets a tensor's range from the per-image min and max averaged over the images, so
    one bright image does not set it; minmax takes the absolute min and max. Read back from the network input's
    QuantizeLinear scale (unsigned 8 bits over [min(lo, 0), max(hi, 0)], so scale = hi / 255 for images >= 0)."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    fp32 = export_onnx(network, tmp_path / "fp32.onnx", 16)
    brightness = torch.tensor([1.0, 1.0, 1.0, 8.0]).view(4, 1, 1, 1)  # one outlier image
    calibration = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * brightness
    int8 = tmp_path / "int8.onnx"
    quantizer = Int8Quantization("ptq_int8", calib_images=4, calibrate_method=calibrate_method)
    quantizer.quantize_file(fp32, int8, calibration)
    graph = onnx.load(str(int8)).graph
    initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.initializer}
    (quantize_input,) = (n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name)
    per_image_max = calibration.amax(dim=(1, 2, 3))
    expected_max = per_image_max.mean() if calibrate_method == "mean_minmax" else per_image_max.max()
    assert float(initializers[quantize_input.input[1]]) == pytest.approx(float(expected_max) / 255, rel=1e-5)
    assert quantizer.settings()["calibrate_method"] == calibrate_method
    # The logits stay FP32: no QuantizeLinear on the graph's output
    assert not any(n.op_type == "QuantizeLinear" and n.output[0] == graph.output[0].name for n in graph.node)
    assert graph.node[-1].op_type != "DequantizeLinear"


def test_auto_calibration_keeps_the_candidate_that_agrees_most_with_fp32(exported, tmp_path):
    """calibrate_method=auto makes a mean_minmax and a minmax file and keeps the one whose top-1 agrees most often
    with the FP32 network's on the calibration images; the record's settings say which, and by how much."""
    _, fp32, _ = exported
    calibration = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    made = {}
    for method in ("auto", "mean_minmax", "minmax"):
        made[method] = tmp_path / f"{method}.onnx"
        quantizer = Int8Quantization("ptq_int8", calib_images=16, calibrate_method=method)
        quantizer.quantize_file(fp32, made[method], calibration)
        if method == "auto":
            settings = quantizer.results()
    agreement = settings["calibration_top1_agreement"]
    assert set(agreement) == {"mean_minmax", "minmax"}
    # Each candidate's agreement is what its own file measures: the share of the 16 calibration images on which its
    # top-1 class is the FP32 file's.
    fp32_top1 = run_onnx(fp32, calibration).argmax(1)
    for method in ("mean_minmax", "minmax"):
        agreeing = int((run_onnx(made[method], calibration).argmax(1) == fp32_top1).sum())
        assert agreement[method] == agreeing / 16, method
    chosen = settings["calibrate_method_used"]
    assert agreement[chosen] == max(agreement.values())
    # The kept file is that candidate's own
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert np.array_equal(run_onnx(made["auto"], images), run_onnx(made[chosen], images))
