"""MMDetection's detectors behind DetectorAdapter (edgecomp.models.detection.mmdet), an optional extra installed by
`bash scripts/install_mmdet.sh`, through the command line. Without the extra only the refusal runs; the rest is
skipped, saying so (tests/integration/test_mmdet_adapter.py: the adapter in-process)."""

import importlib.util
import json
import math
import os

import pytest
import torch

from tests.conftest import compose_config, read_jsonl, run_cli
from tests.helpers.detectors import spread_mmdet_head

HAS_MMDET = all(importlib.util.find_spec(name) is not None for name in ("mmdet", "mmcv", "mmengine"))
needs_mmdet = pytest.mark.skipif(
    not HAS_MMDET, reason="the MMDetection extra is not installed: bash scripts/install_mmdet.sh"
)
SIZE = 128


def test_without_the_extra_model_mmdet_names_the_install_command(tmp_path, data_dir):
    """Run whether the extra is installed or not: a module on PYTHONPATH that fails to import as an absent package
    does stands in for mmdet."""
    absent = tmp_path / "absent"
    absent.mkdir()
    (absent / "mmdet.py").write_text('raise ModuleNotFoundError("No module named \'mmdet\'", name="mmdet")\n')
    proc = run_cli(
        "train.py",
        "experiment=smoke_det",
        "model=mmdet",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        check=False,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(absent), os.environ.get("PYTHONPATH")]))},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert "model=mmdet needs the MMDetection extra" in line and "bash scripts/install_mmdet.sh" in line
    assert not (tmp_path / "runs").exists()


@needs_mmdet
@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_py_scores_an_mmdet_retinanet_as_pycocotools_scores_mmdets_own_predictions(tmp_path):
    """evaluate.py's COCO metrics of an mmdet RetinaNet checkpoint are those of pycocotools on mmdet's own
    detector.predict over the evaluation split.

    Random weights find nothing, so the split's ground truth is rewritten from the model's own detections (three of
    each image's, at score ranks 0, 3 and 10, with one of the image's drawn objects): mAP is then well above 0 and
    below 1, and wrong boxes, labels, category ids or image ids would change it."""
    from mmdet.structures import DetDataSample
    from PIL import Image
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from torchvision.transforms.functional import pil_to_tensor

    from edgecomp.config import build
    from edgecomp.models.detection.mmdet import MMDetAdapter

    data, checkpoint = tmp_path / "data", tmp_path / "retinanet.pt"
    common = ["experiment=smoke_det", "model=mmdet", "logger=none", f"paths.results={tmp_path}", f"paths.data={data}"]
    build(compose_config("evaluate", common).dataset.reader)(split="val")  # generated as evaluate.py will read it
    (annotation_file,) = data.glob("synthetic_sod/*/annotations/instances_val.json")
    coco = json.loads(annotation_file.read_text())
    image_dir = annotation_file.parents[1] / "images" / "val"
    pixels = [pil_to_tensor(Image.open(image_dir / image["file_name"]).convert("RGB")) for image in coco["images"]]
    images = torch.stack(pixels).float() / 255
    assert images.shape[-1] == SIZE  # generated at the input size: the letterbox leaves the pixels as they are

    torch.manual_seed(0)
    model = MMDetAdapter("conf/mmdet/retinanet_r50_fpn.py", num_classes=4, input_size=SIZE, score_threshold=0.0)
    spread_mmdet_head(model)
    torch.save(model.state_dict(), checkpoint)
    samples = [DetDataSample(metainfo=meta) for meta in model.image_metas(len(images))]
    with torch.no_grad():
        predicted = [s.pred_instances for s in model.eval().detector.predict(model.normalise(images), samples)]

    category_ids = sorted(category["id"] for category in coco["categories"])  # label i is the i-th category
    drawn = {}
    for annotation in coco["annotations"]:
        drawn.setdefault(annotation["image_id"], annotation)
    annotations, results = [], []
    for image, found in zip(coco["images"], predicted, strict=True):
        boxes = found.bboxes.clone()
        boxes[:, 2:] -= boxes[:, :2]  # COCO's x, y, w, h
        for rank in (0, 3, 10):
            x, y, w, h = (float(v) for v in boxes[rank])
            category = category_ids[int(found.labels[rank])]
            annotations.append({"image_id": image["id"], "category_id": category, "bbox": [x, y, w, h], "area": w * h})
        annotations.append(dict(drawn[image["id"]]))
        results += [
            {"image_id": image["id"], "category_id": category_ids[int(label)], "bbox": box.tolist(), "score": float(s)}
            for box, label, s in zip(boxes, found.labels, found.scores, strict=True)
        ]
    coco["annotations"] = [{**a, "id": i + 1, "iscrowd": 0} for i, a in enumerate(annotations)]
    annotation_file.write_text(json.dumps(coco))

    ground_truth = COCO(str(annotation_file))
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    expected_map, expected_map50 = evaluation.stats[:2]
    assert 0.05 < expected_map < 0.95

    # one thread, as here: the same float sums, so the same scores and boxes to the last bit
    run_cli("evaluate.py", *common, f"checkpoint={checkpoint}", "device=cpu_torch", "device.threads=1",
            "model.score_threshold=0")  # fmt: skip
    (evaluated,) = read_jsonl(tmp_path / "records.jsonl")
    assert evaluated["model"] == "mmdet_retinanet_r50_fpn"
    assert evaluated["metrics"]["map"] == pytest.approx(expected_map, abs=1e-12)
    assert evaluated["metrics"]["map50"] == pytest.approx(expected_map50, abs=1e-12)


@needs_mmdet
@pytest.mark.slow
def test_scalekd_distils_an_mmdet_r50_from_an_r101_with_every_term_finite(tmp_path, data_dir):
    """ScaleKD's smoke run with mmdet's RetinaNet R101 (at 2x the resolution) teaching its R50: one epoch, 96 px."""
    run_cli(
        "compress.py",
        "experiment=smoke_scalekd",
        "model=mmdet",
        "teacher=mmdet",
        "trainer.max_epochs=1",
        "dataset.image_size=96",  # synthetic_sod's smallest
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        timeout=900,
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["compression"]["teacher"] == "mmdet_retinanet_r101_fpn"
    distill = record["distill"]
    terms = [key for key, value in distill.items() if isinstance(value, dict) and "last" in value]
    assert {"loss_feat", "loss_cls", "loss_bbox", "loss_det"} <= set(terms)
    assert all(math.isfinite(distill[t]["first"]) and math.isfinite(distill[t]["last"]) for t in terms)
    # what is deployed is the student alone, the baseline's architecture
    assert record["params"] == record["baseline"]["params"] and record["flops"] == record["baseline"]["flops"]
    assert distill["deployed_architecture_equal_baseline"]


@needs_mmdet
@pytest.mark.slow
def test_fastnas_prunes_an_mmdet_retinanets_head_through_modelopt(tmp_path, data_dir):
    """ModelOpt traces mmdet's RetinaNet (its head's convolutions searched here, to keep the smoke short)."""
    run_cli(
        "compress.py",
        "experiment=smoke_fastnas",
        "model=mmdet",
        "compressor.search_layers=['detector.bbox_head.*']",
        "compressor.epochs=0",
        "trainer.max_epochs=1",
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        timeout=900,
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["flops"] < 0.9 * record["baseline"]["flops"] and record["params"] < record["baseline"]["params"]
    pruned = record["fastnas"]["subnet_config"]
    assert pruned and all(name.startswith("detector.bbox_head.") for name in pruned)


@needs_mmdet
@pytest.mark.slow
def test_train_py_deploys_an_mmdet_retinanet_that_ptq_int8_quantizes(tmp_path, data_dir):
    """train.py trains, exports and records an mmdet RetinaNet; compress.py compressor=ptq_int8 from its checkpoint
    writes a QDQ INT8 ONNX file a third of the FP32 one's size, scored with COCO metrics from ONNX Runtime's outputs
    decoded by mmdet."""
    common = [
        "experiment=smoke_det",
        "model=mmdet",
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    ]
    run_cli("train.py", *common, "trainer.max_epochs=1")
    (trained,) = read_jsonl(tmp_path / "records.jsonl")
    assert trained["model"] == "mmdet_retinanet_r50_fpn" and trained["artifact"].endswith(".onnx")
    assert 30e6 < trained["params"] < 40e6  # RetinaNet R50-FPN with a 4-class head: ~36 M
    assert set(trained["metrics"]) >= {"map", "map50", "recall"}
    run_cli("compress.py", *common, "compressor=ptq_int8", f"checkpoint={trained['checkpoint']}", timeout=900)
    quantized = read_jsonl(tmp_path / "records.jsonl")[-1]
    assert quantized["artifact"].endswith(".onnx") and quantized["compressor"] == "ptq_int8"
    assert quantized["runtime"]["precision"] == "int8"
    assert quantized["size_bytes"] <= 0.35 * quantized["baseline"]["size_bytes"]
    assert set(quantized["metrics"]) >= {"map", "map50", "recall"} and quantized["latency_ms"]["images"] == 8
