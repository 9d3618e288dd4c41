"""MMDetection's detectors behind DetectorAdapter (edgecomp.models.detection.mmdet), an optional extra installed by
`bash scripts/install_mmdet.sh`, in-process: mmdet's own loss falls through the adapter, the adapter's detections are
mmdet's own predict, ScaleKD distils between mmdet anchor heads, ONNX Runtime's outputs decode to the eager detections
(slow for the point heads), and evaluate.py scores an mmdet checkpoint as pycocotools scores mmdet's own predictions.
Skipped without the extra, saying so (tests/e2e/test_mmdet.py: the command line, and the refusal without the extra)."""

import importlib.util
import json

import pytest
import torch

from tests.conftest import compose_config, read_jsonl, run_in_process
from tests.helpers.detectors import spread_mmdet_head

HAS_MMDET = all(importlib.util.find_spec(name) is not None for name in ("mmdet", "mmcv", "mmengine"))


needs_mmdet = pytest.mark.skipif(
    not HAS_MMDET, reason="the MMDetection extra is not installed: bash scripts/install_mmdet.sh"
)


SIZE = 128


def _batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, SIZE, SIZE, generator=generator)
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 110.0, 90.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[30.0, 30.0, 90.0, 100.0]]), "labels": torch.tensor([0])},
    ]
    return images, targets


@needs_mmdet
@pytest.mark.parametrize("arch", ["retinanet_r50_fpn", "fcos_r50_fpn"])
def test_mmdets_own_loss_falls_when_trained_through_the_adapter_on_synthetic_sod(arch, data_dir):
    """8 SGD steps on the first two images of smoke_det's synthetic_sod batch, as its datamodule gives them."""
    from edgecomp.config import build
    from edgecomp.models.detection.mmdet import MMDetAdapter

    datamodule = build(compose_config("train", ["experiment=smoke_det", f"paths.data={data_dir}"]).dataset.datamodule)
    datamodule.setup("fit")
    images, targets = next(iter(datamodule.train_dataloader()))
    images, targets = images[:2], [{key: t[key] for key in ("boxes", "labels")} for t in targets[:2]]
    assert images.shape[-1] == SIZE and all(len(t["boxes"]) for t in targets)
    torch.manual_seed(0)
    model = MMDetAdapter(f"conf/mmdet/{arch}.py", num_classes=4, input_size=SIZE).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    losses = []
    for _ in range(8):
        terms = model.loss(images, targets)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert {"loss_cls", "loss_bbox"} <= set(terms) and all(torch.isfinite(v) for v in terms.values())
    assert losses[-1] < losses[0]
    features = model.features(images)
    assert features.last_stage.shape[1] == 2048 and [p.shape[-1] for p in features.pyramid] == [16, 8, 4, 2, 1]


@needs_mmdet
def test_the_adapters_detections_are_mmdets_own_predict():
    """The same boxes, scores and labels as mmdet's detector.predict on the same normalised images (its data
    samples telling it the image is the S x S input)."""
    from mmdet.structures import DetDataSample

    from edgecomp.models.detection.mmdet import MMDetAdapter

    torch.manual_seed(0)
    model = MMDetAdapter("conf/mmdet/retinanet_r50_fpn.py", num_classes=4, input_size=SIZE, score_threshold=0.0).eval()
    images, _ = _batch()
    ours = model.predict(images)
    samples = [DetDataSample(metainfo=meta) for meta in model.image_metas(len(images))]
    with torch.no_grad():
        theirs = model.detector.predict(model.normalise(images), samples, rescale=False)
    for mine, sample in zip(ours, theirs, strict=True):
        assert len(mine["boxes"]) == 100  # score threshold 0: max_detections each
        assert torch.equal(mine["boxes"], sample.pred_instances.bboxes)
        assert torch.equal(mine["scores"], sample.pred_instances.scores)
        assert torch.equal(mine["labels"], sample.pred_instances.labels)


@needs_mmdet
def test_scalekd_distils_an_mmdet_r50_from_an_r101_at_twice_its_resolution():
    """The distiller between mmdet anchor heads, in-process (the command-line run is in the slow tier): its three
    terms finite and training the student and the SDF, not the assistant; the assistant's detection loss (mmdet's
    own, on the CSA's features) training the CSA alone."""
    from edgecomp.distill.families import family_view
    from edgecomp.distill.output_losses import OutputDistillationSettings
    from edgecomp.distill.scalekd_distiller import CSASettings, ScaleKD, SDFSettings
    from edgecomp.models.detection.mmdet import MMDetAdapter
    from tests.helpers.distillation import SIZE as size
    from tests.helpers.distillation import distillation_batch  # two images: one with objects, one without

    torch.manual_seed(0)
    student = MMDetAdapter("conf/mmdet/retinanet_r50_fpn.py", num_classes=4, input_size=size)
    teacher = MMDetAdapter("conf/mmdet/retinanet_r101_fpn.py", num_classes=4, input_size=2 * size)
    teacher.eval().requires_grad_(False)
    distiller = ScaleKD(family_view(student), family_view(teacher), 2.0, SDFSettings(embed_channels=16),
                        CSASettings(dim=32), OutputDistillationSettings())  # fmt: skip
    terms = distiller.losses(distillation_batch(student, teacher, distiller))
    assert set(terms) == {"loss_feat", "loss_cls", "loss_bbox"} and all(torch.isfinite(v) for v in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    assert all(p.grad is None for p in distiller.csa.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.detector.backbone.parameters())
    assert distiller.sdf.adapter.weight.grad is not None

    student.zero_grad()
    step = distiller.assistant_step(distillation_batch(student, teacher, distiller))
    assert {"loss_cls", "loss_bbox"} <= set(step.losses) and all(torch.isfinite(v) for v in step.losses.values())
    torch.stack(list(step.losses.values())).sum().backward()
    assert sum(float(p.grad.abs().sum()) for p in distiller.csa.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in student.detector.backbone.parameters())


@needs_mmdet
@pytest.mark.parametrize(
    "arch",
    [
        "retinanet_r50_fpn",
        pytest.param("fcos_r50_fpn", marks=pytest.mark.slow),  # the point heads: an export each (10 s)
        pytest.param("gfl_r50_fpn", marks=pytest.mark.slow),
    ],
)
def test_onnx_runtime_outputs_decode_to_mmdets_eager_detections(arch, tmp_path):
    """The exported network is the head's raw per-level outputs; mmdet's predict_by_feat on what ONNX Runtime
    returns gives the eager detections (every score kept; NMS decides how many)."""
    from edgecomp.evaluate.coco_evaluator import deployed_detections
    from edgecomp.evaluate.device import TargetDevice
    from edgecomp.evaluate.onnx_export import export_onnx
    from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
    from edgecomp.models.detection.mmdet import MMDetAdapter

    torch.manual_seed(0)
    model = MMDetAdapter(f"conf/mmdet/{arch}.py", num_classes=4, input_size=SIZE, score_threshold=0.0).eval()
    spread_mmdet_head(model)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    eager = model.predict(images)
    exported = export_onnx(model, tmp_path / f"{arch}.onnx", SIZE)
    deployed = deployed_detections(
        model, OnnxRuntime().load(exported, TargetDevice("cpu", "cpu", OnnxRuntime())), images
    )
    for got, expected in zip(deployed, eager, strict=True):
        assert len(got["boxes"]) == len(expected["boxes"]) > 10
        assert torch.equal(got["labels"], expected["labels"])
        torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=1e-4)
        # pixels of a 128 px frame: FP32 rounding differs between ONNX Runtime's blocked kernels and PyTorch's, by the
        # CPU's vector width (at most 0.02 px, a relative 2.2e-4, on an AVX2 AMD EPYC; under 0.01 px on AVX-512)
        torch.testing.assert_close(got["boxes"], expected["boxes"], atol=5e-2, rtol=5e-4)


@needs_mmdet
@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_py_scores_an_mmdet_retinanet_as_pycocotools_scores_mmdets_own_predictions(tmp_path):
    """evaluate.py's COCO metrics (its own Hydra main, in this process) of an mmdet RetinaNet checkpoint are those of pycocotools on mmdet's own
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
    run_in_process("evaluate.py", *common, f"checkpoint={checkpoint}", "device=cpu_torch", "device.threads=1",
            "model.score_threshold=0")  # fmt: skip
    (evaluated,) = read_jsonl(tmp_path / "records.jsonl")
    assert evaluated["model"] == "mmdet_retinanet_r50_fpn"
    assert evaluated["metrics"]["map"] == pytest.approx(expected_map, abs=1e-12)
    assert evaluated["metrics"]["map50"] == pytest.approx(expected_map50, abs=1e-12)
