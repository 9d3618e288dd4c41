"""MMDetection's detectors behind DetectorAdapter (edgecomp.models.detection.mmdet), an optional extra installed by
`bash scripts/install_mmdet.sh`. Without the extra only the refusal runs; the rest is skipped, saying so."""

import importlib.util
import math

import pytest
import torch

from tests.conftest import read_jsonl, run_cli

HAS_MMDET = all(importlib.util.find_spec(name) is not None for name in ("mmdet", "mmcv", "mmengine"))
needs_mmdet = pytest.mark.skipif(
    not HAS_MMDET, reason="the MMDetection extra is not installed: bash scripts/install_mmdet.sh"
)
SIZE = 128


@pytest.mark.skipif(HAS_MMDET, reason="the MMDetection extra is installed: there is nothing to refuse")
def test_without_the_extra_model_mmdet_names_the_install_command(tmp_path, data_dir):
    proc = run_cli(
        "train.py",
        "experiment=smoke_det",
        "model=mmdet",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert "model=mmdet needs the MMDetection extra" in line and "bash scripts/install_mmdet.sh" in line
    assert not (tmp_path / "runs").exists()


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
def test_mmdets_own_loss_falls_when_trained_through_the_adapter(arch):
    from edgecomp.models.detection.mmdet import MMDetAdapter

    torch.manual_seed(0)
    model = MMDetAdapter(f"conf/mmdet/{arch}.py", num_classes=4, input_size=SIZE).train()
    images, targets = _batch()
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
def test_train_py_trains_deploys_and_records_an_mmdet_retinanet(tmp_path, data_dir):
    run_cli(
        "train.py",
        "experiment=smoke_det",
        "model=mmdet",
        "trainer.max_epochs=1",
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["model"] == "mmdet_retinanet_r50_fpn" and record["artifact"].endswith(".onnx")
    assert 30e6 < record["params"] < 40e6  # RetinaNet R50-FPN with a 4-class head: ~36 M
    assert set(record["metrics"]) >= {"map", "map50", "recall"}


@needs_mmdet
def test_scalekd_distils_an_mmdet_r50_from_an_r101_with_every_term_finite(tmp_path, data_dir):
    """ScaleKD's smoke run with mmdet's RetinaNet R101 (at 2x the resolution) teaching its R50: one epoch each."""
    run_cli(
        "compress.py",
        "experiment=smoke_scalekd",
        "model=mmdet",
        "teacher=mmdet",
        "trainer.max_epochs=1",
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
def test_a_point_head_is_refused_for_distillation_before_any_work(tmp_path, data_dir):
    proc = run_cli(
        "compress.py",
        "experiment=smoke_scalekd",
        "model=mmdet",
        "model.arch=fcos_r50_fpn",
        "teacher=mmdet",
        "teacher.arch=fcos_r50_fpn",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        check=False,
    )
    assert proc.returncode == 1 and "its mmdet head FCOSHead is not an AnchorHead" in proc.stderr
    assert not (tmp_path / "runs").exists()


@needs_mmdet
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
