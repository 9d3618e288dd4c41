"""`evaluate.py artifact=FILE.onnx`: files edgecomp did not make, scored as they are (in-process runs of the
evaluate pipeline on the smoke sets). A quantized file of edgecomp's own is re-evaluated in tests/integration/test_ptq.py."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch

from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.models.detection.yolov8 import YOLOv8Adapter, offline_ultralytics_environment
from edgecomp.pipelines import evaluate
from tests.conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMOKE_DET_SIZE = 128  # experiment=smoke_det's image size


def run_evaluate(tmp_path, *overrides: str) -> dict:
    settings = [f"paths.results={tmp_path / 'results'}", f"paths.data={tmp_path / 'data'}", "logger=none", *overrides]
    return evaluate.run(compose_config("evaluate", settings))


def onnx_outputs(path, images: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: image[None].numpy()}) for image in images]


@pytest.fixture(scope="module")
def ultralytics_export(tmp_path_factory):
    """A 4-class YOLOv8n saved by Ultralytics, and Ultralytics' own ONNX export of it (batch 1, decoded boxes out)."""
    offline_ultralytics_environment()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    folder = tmp_path_factory.mktemp("ultralytics")
    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    yolo.model = DetectionModel("yolov8n.yaml", nc=4, verbose=False)
    yolo.save(folder / "yolov8n-4.pt")
    exported = YOLO(folder / "yolov8n-4.pt").export(format="onnx", imgsz=SMOKE_DET_SIZE, verbose=False)
    return folder / "yolov8n-4.pt", exported


def test_ultralytics_export_and_edgecomps_export_of_one_checkpoint_agree(ultralytics_export, tmp_path):
    checkpoint, exported = ultralytics_export
    theirs = run_evaluate(tmp_path, "experiment=smoke_det", f"artifact={exported}")
    ours = run_evaluate(tmp_path, "experiment=smoke_det", f"model.pretrained_file={checkpoint}")
    assert theirs["artifact"] == str(exported) and theirs["model"] == "yolov8n-4.onnx" and theirs["params"] is None
    assert ours["artifact"].endswith(".onnx") and ours["weights"]["format"] == "ultralytics"
    assert theirs["latency_ms"]["median"] > 0 and theirs["size_bytes"] > 1_000_000
    assert abs(theirs["metrics"]["map"] - ours["metrics"]["map"]) <= 0.002
    # Stronger than the mAP of random weights: the two files' predictions before NMS agree on the same images (one
    # decoded inside Ultralytics' graph, the other from edgecomp's head outputs by the adapter).
    adapter = YOLOv8Adapter(4, SMOKE_DET_SIZE).eval()
    images = torch.rand(2, 3, SMOKE_DET_SIZE, SMOKE_DET_SIZE, generator=torch.Generator().manual_seed(1))
    for (decoded,), head in zip(onnx_outputs(exported, images), onnx_outputs(ours["artifact"], images), strict=True):
        outputs = adapter.outputs_from_tensors([torch.from_numpy(t) for t in head])
        ours_decoded = adapter.detect._inference(adapter.flatten_head_outputs(outputs))
        np.testing.assert_allclose(ours_decoded.numpy(), decoded, atol=2e-3, rtol=1e-4)


@pytest.mark.slow  # the fast tier reads classifier logits from ONNX files in tests/integration/test_ptq.py's re-evaluation
def test_a_foreign_classifier_is_scored_through_its_logits(tmp_path):
    """A timm classifier exported by torch itself (batch fixed at 1): its top-1 through ONNX Runtime is the eager
    model's on the same evaluation split."""
    cfg = compose_config("evaluate", ["experiment=smoke", f"paths.data={tmp_path / 'data'}"])
    model = timm.create_model("resnet18", num_classes=cfg.dataset.num_classes).eval()
    size = cfg.dataset.image_size
    path = tmp_path / "resnet18.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False)
    record = run_evaluate(tmp_path, "experiment=smoke", f"artifact={path}")
    datamodule = build(cfg.dataset.datamodule)
    datamodule.setup("fit")
    with torch.no_grad():
        correct = [(model(images).argmax(1) == labels) for images, labels in datamodule.eval_dataloader()]
    assert record["metrics"]["top1"] == pytest.approx(float(torch.cat(correct).float().mean()), abs=1e-6)
    assert record["model"] == "resnet18.onnx" and record["runtime"]["precision"] == "fp32"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["experiment=smoke", "dataset.image_size=128"],
            r"is no classifier of this dataset's \d+ classes: expected one output \[N, \d+\]",
        ),
        (["experiment=smoke_det", "dataset.image_size=160"], r"expected one input \[N, 3, 160, 160\]"),
        (["experiment=smoke_det", "checkpoint=x.ckpt"], "takes one of checkpoint=, artifact="),
    ],
    ids=["detector-on-classification", "input-size", "two-inputs"],
)
def test_a_file_that_does_not_fit_is_refused_naming_its_shapes(ultralytics_export, tmp_path, overrides, message):
    _, exported = ultralytics_export
    with pytest.raises(ConfigError, match=message) as refused:
        run_evaluate(tmp_path, *overrides, f"artifact={exported}")
    if "checkpoint=x.ckpt" not in overrides:
        # 4 boxes + 4 class scores at 16^2 + 8^2 + 4^2 anchor points of a 128 px image
        assert "outputs [1, 8, 336]" in str(refused.value)
    assert not (tmp_path / "results" / "records.jsonl").exists()
