import pytest
import timm
import torch

from edgecomp.config import build
from edgecomp.errors import CheckpointError
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from edgecomp.models.timm_classifier import create_classifier
from tests.conftest import CONF, compose_config

CONFIGURED = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
MODELS = [name for name in CONFIGURED if "create_classifier" in (CONF / "model" / f"{name}.yaml").read_text()]
DETECTORS = {
    "retinanet": RetinaNetAdapter,
    "fcos": FCOSAdapter,
    "faster_rcnn": FasterRCNNAdapter,
    "yolov8n": YOLOv8Adapter,
    "yolov8s": YOLOv8Adapter,
    "yolov8m": YOLOv8Adapter,
}
OPTIONAL_DETECTORS = [
    "mmdet"
]  # the MMDetection extra's (tests/integration/test_mmdet_adapter.py builds it where it is installed)


def test_every_model_option_is_a_classifier_or_a_detector():
    assert sorted([*MODELS, *DETECTORS, *OPTIONAL_DETECTORS]) == CONFIGURED
    assert sorted(p.stem for p in (CONF / "teacher").glob("*.yaml")) == CONFIGURED


def test_the_six_benchmark_models_and_the_int8_reference_are_configured():
    assert MODELS == sorted(
        [
            "mobilenetv3_small_100",
            "mobilenetv3_large_100",
            "efficientnet_b1",
            "efficientnet_b3",
            "densenet169",
            "densenet201",
            "resnet50",  # benchmarks.ptq_int8's dense-convolution reference
        ]
    )


@pytest.mark.parametrize("name", MODELS)
def test_model_and_teacher_options_build_random_init_classifiers(name):
    cfg = compose_config("train", [f"model={name}", f"teacher={name}", "dataset.num_classes=7"])
    model = build(cfg.model).eval()
    assert type(model) is type(build(cfg.teacher))
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_options_build_their_adapter_for_the_dataset(name):
    overrides = [f"model={name}", f"teacher={name}", "dataset=synthetic_sod", "dataset.num_classes=3"]
    cfg = compose_config("train", [*overrides, "dataset.image_size=96"])
    model, teacher = build(cfg.model), build(cfg.teacher)
    assert type(model) is type(teacher) is DETECTORS[name]
    assert (model.num_classes, model.input_size, model.name) == (3, 96, cfg.model.name)


def test_a_detector_backbone_override_and_a_pretrained_file(tmp_path):
    overrides = ["model=retinanet", "model.backbone=mobilenet_v2", "dataset=synthetic_sod", "dataset.image_size=96"]
    cfg = compose_config("train", overrides)
    torch.manual_seed(1)
    source = build(cfg.model)
    assert source.backbone_name == "mobilenet_v2" and cfg.model.name == "retinanet_mobilenet_v2"
    torch.save(source.state_dict(), tmp_path / "retinanet.pt")
    torch.manual_seed(2)
    loaded = build(cfg.model, pretrained_file=str(tmp_path / "retinanet.pt"))
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    with pytest.raises(CheckpointError):
        build(cfg.model, pretrained_file=str(tmp_path / "missing.pt"))


def test_pretrained_file_loads_the_backbone_and_replaces_a_mismatched_head(tmp_path):
    source = timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "imagenet.pth")
    model = create_classifier("mobilenetv3_small_100", num_classes=10, pretrained_file=tmp_path / "imagenet.pth")
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
    assert model.get_classifier().out_features == 10


def test_missing_pretrained_file_and_unknown_model_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_classifier("mobilenetv3_small_100", 10, pretrained_file=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no model named"):
        create_classifier("mobilenetv9_huge", 10)
