"""The detection training and evaluation path: letterbox, DataModule, each detector trained through the
DetectionModule with Lightning on synthetic_sod and on real COCO128 images, and the COCO evaluation of its output.

Small settings throughout (128 px, 4 images per split): what is tested is that each real component does its job,
not how well a detector learns in a few steps. (tests/unit/test_letterbox.py: the letterbox on its own.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from edgecomp.config import build
from edgecomp.data.detection.letterbox import to_original_boxes
from edgecomp.errors import ConfigError
from edgecomp.evaluate.coco_evaluator import CocoEvaluator, coco_detections
from edgecomp.evaluate.coco_metrics import METRIC_KEYS
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime
from edgecomp.models.detection.adapter import DetectorAdapter
from tests.conftest import compose_config

SIZE = 128
DETECTORS = ("retinanet", "fcos", "faster_rcnn", "yolov8n")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mini_coco128(tmp_path_factory, coco128) -> Path:
    """The first 4 images of each COCO128 split, with their label files and data.yaml: the real files, fewer."""
    root = tmp_path_factory.mktemp("coco128")
    shutil.copy(coco128 / "data.yaml", root / "data.yaml")
    for folder in ("train2017", "val2017"):
        (root / "images" / folder).mkdir(parents=True)
        (root / "labels" / folder).mkdir(parents=True)
        for image in sorted((coco128 / "images" / folder).glob("*.jpg"))[:4]:
            shutil.copy(image, root / "images" / folder / image.name)
            label = coco128 / "labels" / folder / f"{image.stem}.txt"
            if label.exists():
                shutil.copy(label, root / "labels" / folder / label.name)
    return root


# Generated stand-ins for COCO128 in its own layout: images of other shapes than the square input (landscape, portrait,
# one more than twice the input size), boxes at known places of 80 classes, so the letterbox's scale and its inverse
# are exercised wherever the tests run.
GENERATED_SHAPES = ((300, 180), (90, 160), (200, 120), (128, 40))  # (width, height)


@pytest.fixture(scope="module")
def generated_coco128(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated_coco128")
    (root / "data.yaml").write_text("names: [" + ", ".join(f"class{c}" for c in range(80)) + "]\n")
    rng = torch.Generator().manual_seed(0)
    for folder in ("train2017", "val2017"):
        (root / "images" / folder).mkdir(parents=True)
        (root / "labels" / folder).mkdir(parents=True)
        for number, (width, height) in enumerate(GENERATED_SHAPES, start=1):
            pixels = torch.randint(0, 256, (height, width, 3), generator=rng, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / "images" / folder / f"{number:012d}.jpg")
            lines = []
            for _ in range(3):
                w, h = (0.1 + 0.4 * torch.rand(2, generator=rng)).tolist()
                x, y = (
                    (w / 2 + (1 - w) * torch.rand(1, generator=rng)).item(),
                    (h / 2 + (1 - h) * torch.rand(1, generator=rng)).item(),
                )
                category = int(torch.randint(0, 80, (1,), generator=rng))
                lines.append(f"{category} {x:.6f} {y:.6f} {w:.6f} {h:.6f}")
            (root / "labels" / folder / f"{number:012d}.txt").write_text("\n".join(lines) + "\n")
    return root


def dataset_overrides(dataset: str, data_dir: Path, coco_root: Path | None) -> list[str]:
    common = [f"dataset.image_size={SIZE}", "dataset.datamodule.num_workers=0", "dataset.datamodule.batch_size=4"]
    if dataset == "synthetic_sod":
        return [
            "dataset=synthetic_sod",
            f"paths.data={data_dir}",
            "dataset.reader.train_images=4",
            "dataset.reader.val_images=4",
            *common,
        ]
    return ["dataset=coco128", f"dataset.root={coco_root}", *common]


def datamodule_for(overrides: list[str]):
    cfg = compose_config("train", overrides)
    datamodule = build(cfg.dataset.datamodule)
    datamodule.setup("fit")
    return cfg, datamodule


# ------------------------------------------------------------------------------------------------------ DataModule


def test_synthetic_sod_batches_follow_the_adapter_conventions(data_dir):
    cfg, datamodule = datamodule_for(dataset_overrides("synthetic_sod", data_dir, None))
    assert datamodule.category_ids == [1, 2, 3, 4]  # the generated set numbers its categories from 1
    images, targets = next(iter(datamodule.eval_dataloader()))
    assert images.shape == (4, 3, SIZE, SIZE) and images.dtype == torch.float32
    index = datamodule.eval_index
    for target in targets:
        annotations = [a for a in index.annotations if a["image_id"] == target["image_id"]]
        expected = sorted(a["category_id"] - 1 for a in annotations)
        assert sorted(target["labels"].tolist()) == expected
        assert target["boxes"].shape == (len(annotations), 4)
        assert target["scale"].tolist() == [1.0] * 4  # generated at the input size: nothing to resize


@pytest.mark.parametrize("coco_layout", ["generated_coco128", "mini_coco128"])
def test_coco128_letterboxed_targets_map_back_to_the_ground_truth(coco_layout, request):
    """Each image's targets, letterboxed to the square input, come back to the annotations' own pixels."""
    cfg, datamodule = datamodule_for(dataset_overrides("coco128", None, request.getfixturevalue(coco_layout)))
    assert datamodule.category_ids == list(range(80))
    data = datamodule.eval_set()
    images_by_id = {image["id"]: image for image in datamodule.eval_index.images}
    by_image = datamodule.eval_index.annotations_by_image()
    for position in range(len(data)):
        image, target = data[position]
        record = images_by_id[target["image_id"]]
        assert image.shape == (3, SIZE, SIZE)
        original = to_original_boxes(target["boxes"], target["scale"], record["width"], record["height"])
        truth = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in by_image[record["id"]])])
        assert torch.allclose(original, truth.reshape(-1, 4), atol=1e-3)


def visdrone_root(tmp_path: Path, annotations: str) -> Path:
    """A VisDrone-DET root with one 160 x 120 image per split, annotated with `annotations` (official lines)."""
    root = tmp_path / "visdrone"
    for folder in ("VisDrone2019-DET-train", "VisDrone2019-DET-val"):
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "annotations").mkdir()
        Image.new("RGB", (160, 120), (40, 40, 40)).save(root / folder / "images" / "0000001_00000_d_0000001.jpg")
        (root / folder / "annotations" / "0000001_00000_d_0000001.txt").write_text(annotations)
    return root


def test_training_targets_drop_ignore_regions(tmp_path):
    """A VisDrone image with an ignored region (category 0) and an 'others' box (11): neither is a training target,
    both stay in the ground truth that the metrics see."""
    root = visdrone_root(
        tmp_path, "10,20,30,10,1,4,0,0\n90,60,40,30,1,9,0,0\n0,100,50,20,0,0,0,0\n120,5,20,20,1,11,0,0\n"
    )
    cfg, datamodule = datamodule_for(
        ["dataset=visdrone", f"dataset.root={root}", f"dataset.image_size={SIZE}", "dataset.datamodule.num_workers=0"]
    )
    _, train_target = datamodule.train_set()[0]
    assert sorted(train_target["labels"].tolist()) == [3, 8]  # car (4) and bus (9) as labels 0..9
    assert int((torch.tensor([a["iscrowd"] for a in datamodule.eval_index.annotations]) == 1).sum()) == 2 * 10


def test_visdrone_patches_train_on_four_quadrants(tmp_path):
    root = visdrone_root(tmp_path, "10,20,30,10,1,4,0,0\n")
    cfg, datamodule = datamodule_for(
        [
            "dataset=visdrone",
            f"dataset.root={root}",
            f"dataset.image_size={SIZE}",
            f"dataset.datamodule.patches_dir={tmp_path / 'patches'}",
        ]
    )
    assert len(datamodule.train_index.images) == 4 and len(datamodule.eval_index.images) == 1
    assert len(list((tmp_path / "patches").rglob("*.jpg"))) == 4


def test_a_class_count_that_does_not_match_the_dataset_is_named(data_dir):
    with pytest.raises(ConfigError, match=r"dataset.num_classes=3, but the dataset has 4 categories"):
        cfg = compose_config("train", [*dataset_overrides("synthetic_sod", data_dir, None)])
        with open_dict(cfg):
            cfg.dataset.datamodule.num_classes = 3
        build(cfg.dataset.datamodule).setup("fit")


# ------------------------------------------------------------------------------------------------------ evaluation


class Oracle(DetectorAdapter):
    """Predicts, batch after batch, exactly the evaluation targets (in the letterboxed frame) with score 1."""

    decodes_forward_outputs = False  # it has no network: its `predict` is scored

    def __init__(self, targets):
        super().__init__(num_classes=80, input_size=SIZE)
        self.targets = list(targets)
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def features(self, images):
        raise NotImplementedError

    def head(self, pyramid):
        raise NotImplementedError

    def loss(self, images, targets):
        raise NotImplementedError

    def predict(self, images):
        batch, self.targets = self.targets[: len(images)], self.targets[len(images) :]
        return [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in batch]


@pytest.mark.parametrize("coco_layout", ["generated_coco128", "mini_coco128"])
def test_perfect_detections_through_the_letterbox_score_map_1(coco_layout, request):
    """Non-square COCO images at 128 px: only an exact inverse of the letterbox and of the label map scores 1.0."""
    cfg, datamodule = datamodule_for(dataset_overrides("coco128", None, request.getfixturevalue(coco_layout)))
    targets = [target for _, target in datamodule.eval_set()]
    assert any(t["scale"][0] < 0.5 for t in targets)
    detections = coco_detections(Oracle(targets), None, datamodule, torch.device("cpu"), torch.float32)
    assert {d["category_id"] for d in detections} == {a["category_id"] for a in datamodule.eval_index.annotations}
    device = build(compose_config("train").device)
    metrics = CocoEvaluator()(Oracle(targets), None, datamodule, device)
    assert metrics["map"] == pytest.approx(1.0) and metrics["recall"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------------ training


class LossHistory(pl.Callback):
    def __init__(self):
        self.losses: list[float] = []
        self.logged: set[str] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.logged |= set(trainer.callback_metrics)


@pytest.mark.parametrize("dataset", ["synthetic_sod", "coco128"])
@pytest.mark.parametrize("model", DETECTORS)
def test_each_detector_trains_with_a_falling_loss_and_evaluates(model, dataset, data_dir, request):
    coco_root = request.getfixturevalue("mini_coco128") if dataset == "coco128" else None
    overrides = [
        *dataset_overrides(dataset, data_dir, coco_root),
        f"model={model}",
        "dataset.datamodule.augment=none",  # the same 4 images every step: the loss must fall on them
        "dataset.module.warmup_steps=0",
        "optimizer.optimizer.lr=0.01",
    ]
    if model == "faster_rcnn":  # its second stage costs per proposal: fewer at evaluation keep the test fast
        overrides += ["model.proposals_test=100", "model.rois_per_image=128"]
    cfg, datamodule = datamodule_for(overrides)
    torch.manual_seed(0)
    detector = build(cfg.model)
    module = build(cfg.dataset.module)(detector, optimizer=build(cfg.optimizer.optimizer), scheduler=None)
    history = LossHistory()
    trainer = pl.Trainer(
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[history],
    )
    trainer.fit(module, datamodule=datamodule)
    assert len(history.losses) == 6 and all(torch.isfinite(torch.tensor(history.losses)))
    assert min(history.losses[-2:]) < history.losses[0], history.losses
    assert "train/loss" in history.logged and len([k for k in history.logged if k.startswith("train/")]) >= 3

    device = build(cfg.device)
    predictor = TorchEagerRuntime().load(
        detector, device
    )  # the trained module as it is (ONNX: test_detector_deployment)
    metrics = build(cfg.dataset.evaluator)(detector, predictor, datamodule, device)
    assert set(metrics) == set(METRIC_KEYS)
    # The split has objects: the overall metrics are numbers (NaN only for a size range without ground truth)
    assert all(metrics[key] == metrics[key] for key in ("map", "map50", "ar100", "recall")), metrics
    assert all(0.0 <= value <= 1.0 for value in metrics.values() if value == value)
