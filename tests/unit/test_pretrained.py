"""Starting from the weights people have: files written by Ultralytics, torchvision and timm themselves, inside the
test (nothing is downloaded), loaded into edgecomp's models and compared with the library's own model."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18, resnet50
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from edgecomp.errors import CheckpointError
from edgecomp.models.checkpoint import load_model, load_weights
from edgecomp.models.detection.create import create_detector
from edgecomp.models.detection.yolov8 import YOLOv8Adapter, offline_ultralytics_environment
from edgecomp.models.timm_classifier import create_classifier
from tests.conftest import RunsCode
from tests.helpers.models import randomised

pytestmark = pytest.mark.usefixtures("one_torch_thread")

YOLO = "edgecomp.models.detection.yolov8.YOLOv8Adapter"
RETINANET = "edgecomp.models.detection.torchvision_dense.RetinaNetAdapter"
SIZE = 64


@pytest.fixture(scope="module")
def ultralytics_file(tmp_path_factory):
    """A 4-class YOLOv8n saved by Ultralytics' own `Model.save` (FP16 weights, a pickled DetectionModel), and the
    model Ultralytics itself loads from that file."""
    offline_ultralytics_environment()
    from ultralytics import YOLO as UltralyticsYOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    yolo = UltralyticsYOLO("yolov8n.yaml")
    yolo.model = randomised(DetectionModel("yolov8n.yaml", nc=4, verbose=False), seed=1)
    path = tmp_path_factory.mktemp("ultralytics") / "yolov8n-4.pt"
    yolo.save(path)
    return path, UltralyticsYOLO(path).model.float().eval()


def test_an_ultralytics_checkpoint_gives_ultralytics_outputs_and_detections(ultralytics_file):
    path, theirs = ultralytics_file
    ours = create_detector(YOLO, "yolov8n", pretrained_file=path, num_classes=4, input_size=SIZE).eval()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        decoded, raw = theirs(images)
        flat = ours.flatten_head_outputs(ours(images))
    torch.testing.assert_close(flat["boxes"], raw["boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(flat["scores"], raw["scores"], atol=1e-4, rtol=0)
    from edgecomp.models.detection.yolov8 import ultralytics_nms

    for mine, reference in zip(ours.predict(images), ultralytics_nms(decoded, 0.001, 0.7, 100), strict=True):
        assert len(mine["boxes"]) == len(reference["boxes"]) > 0
        torch.testing.assert_close(mine["boxes"], reference["boxes"], atol=1e-3, rtol=0)
        assert torch.equal(mine["labels"], reference["labels"])
    report = ours.pretrained_weights
    assert report["format"] == "ultralytics" and report["loaded_share"] == 1.0
    assert report["reinitialised"] == report["left_at_init"] == report["ignored"] == []


def test_an_ultralytics_training_checkpoint_gives_its_ema_weights(ultralytics_file, tmp_path):
    """Mid-training, Ultralytics keeps the live model's weights under `model` and the averaged ones under `ema`: the
    EMA weights are the ones it evaluates and exports, so they are the ones loaded."""
    _, theirs = ultralytics_file
    live = randomised(copy.deepcopy(theirs), seed=3)
    torch.save(
        {"epoch": 3, "model": live.half(), "ema": copy.deepcopy(theirs).half(), "updates": 10}, tmp_path / "last.pt"
    )
    ours = load_weights(YOLOv8Adapter(4, SIZE), tmp_path / "last.pt")
    assert torch.equal(ours.network.model[0].conv.weight, theirs.model[0].conv.weight.half().float())


def test_an_80_class_ultralytics_file_starts_a_4_class_run_with_a_new_classification_branch(tmp_path):
    offline_ultralytics_environment()
    from ultralytics import YOLO as UltralyticsYOLO

    torch.manual_seed(0)
    coco = UltralyticsYOLO("yolov8n.yaml")  # 80 classes
    coco.save(tmp_path / "yolov8n.pt")
    ours = create_detector(YOLO, "yolov8n", pretrained_file=tmp_path / "yolov8n.pt", num_classes=4, input_size=SIZE)
    report = ours.pretrained_weights
    # YOLOv8's classification branch is max(C, 64) wide in its hidden layers, so all of it depends on the class count
    assert report["reinitialised"] == ["network.model.22.cv3"]
    assert report["backbone_share"] == 1.0 and report["left_at_init"] == []
    assert torch.equal(
        ours.network.model[9].cv2.conv.weight, coco.model.model[9].cv2.conv.weight.half().float()
    )  # stored in FP16
    with pytest.raises(CheckpointError, match=r"gives 0% of the backbone.*network\.model\.0\.conv\.weight"):
        create_detector(
            YOLO, "yolov8s", pretrained_file=tmp_path / "yolov8n.pt", num_classes=4, input_size=SIZE, scale="s"
        )


def test_a_pickle_naming_a_global_outside_the_allowlist_is_refused_naming_it(ultralytics_file, tmp_path):
    _, theirs = ultralytics_file
    marker = tmp_path / "ran"
    plain, disguised = tmp_path / "plain.pt", tmp_path / "disguised.pt"
    torch.save({"model": RunsCode(marker)}, plain)
    # The Ultralytics classes are allowed, so the file is read again with the allowlist: the extra global still stops it
    torch.save({"model": copy.deepcopy(theirs).half(), "callback": RunsCode(marker)}, disguised)
    for path in (plain, disguised):
        with pytest.raises(CheckpointError, match=r"GLOBAL posix\.system"):
            create_detector(YOLO, "yolov8n", pretrained_file=path, num_classes=4, input_size=SIZE)
    assert not marker.exists()  # refused by the unpickler before anything was called


def torchvision_retinanet(num_classes: int) -> RetinaNet:
    """torchvision's retinanet_resnet50_fpn as its COCO weights are built: frozen BatchNorm (so the saved state_dict
    has no BatchNorm counters), P6/P7 from P5."""
    backbone = _resnet_fpn_extractor(
        resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )
    return randomised(RetinaNet(backbone, num_classes), seed=4).eval()


def retinanet_resnet50(pretrained_file, num_classes: int):
    """edgecomp's `model=retinanet model.backbone=resnet50` started from `pretrained_file`."""
    return create_detector(
        RETINANET,
        "retinanet_resnet50",
        pretrained_file=pretrained_file,
        num_classes=num_classes,
        input_size=SIZE,
        backbone="resnet50",
    )


@pytest.fixture(scope="module")
def coco_retinanet(tmp_path_factory):
    path = tmp_path_factory.mktemp("torchvision") / "retinanet_resnet50_fpn_coco.pth"
    model = torchvision_retinanet(91)
    torch.save(model.state_dict(), path)
    return path, model


def test_a_torchvision_retinanet_state_dict_gives_torchvisions_outputs(coco_retinanet):
    path, theirs = coco_retinanet
    ours = retinanet_resnet50(path, num_classes=91).eval()
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        features = theirs.backbone(ours.normalise(images))
        reference = theirs.head(list(features.values()))
        mine = ours.torchvision_head_outputs(ours(images))
    for key in ("cls_logits", "bbox_regression"):
        torch.testing.assert_close(mine[key], reference[key], atol=1e-4, rtol=1e-4)
    assert ours.pretrained_weights["renamed"] == {"file": "", "model": "detector."}


def test_a_91_class_torchvision_file_into_4_classes_loads_all_but_the_classification_layer(coco_retinanet):
    path, theirs = coco_retinanet
    ours = retinanet_resnet50(path, num_classes=4)
    report = ours.pretrained_weights
    assert report["reinitialised"] == ["detector.head.classification_head.cls_logits"]
    assert report["left_at_init"] == [] and report["ignored"] == []
    assert torch.equal(
        ours.detector.head.classification_head.conv[0][0].weight, theirs.head.classification_head.conv[0][0].weight
    )


def test_imagenet_backbone_weights_start_a_detector(tmp_path):
    """A classification ResNet's state_dict fills the detector's backbone; its `fc` has no place, the FPN and head
    keep their initialisation. A ResNet-18 file for a ResNet-50 backbone is refused."""
    classifier = randomised(resnet50(), seed=6)
    torch.save(classifier.state_dict(), tmp_path / "resnet50.pth")
    ours = retinanet_resnet50(tmp_path / "resnet50.pth", num_classes=4)
    report = ours.pretrained_weights
    assert report["ignored"] == ["fc"] and report["left_at_init"] == ["detector.backbone.fpn", "detector.head"]
    assert report["backbone_share"] == 1.0
    assert torch.equal(ours.detector.backbone.body.layer4[2].conv3.weight, classifier.layer4[2].conv3.weight)
    torch.save(resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError, match="backbone.*another architecture"):
        retinanet_resnet50(tmp_path / "resnet18.pth", num_classes=4)


def test_timm_safetensors_weights_give_timms_outputs_and_a_new_classifier(tmp_path):
    theirs = randomised(timm.create_model("mobilenetv3_small_100", num_classes=1000), seed=7).eval()
    save_file(theirs.state_dict(), tmp_path / "model.safetensors")
    ours = create_classifier("mobilenetv3_small_100", 1000, pretrained_file=tmp_path / "model.safetensors").eval()
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        torch.testing.assert_close(ours(images), theirs(images), atol=1e-4, rtol=1e-4)
    assert ours.pretrained_weights["format"] == "safetensors"
    flowers = create_classifier("mobilenetv3_small_100", 102, pretrained_file=tmp_path / "model.safetensors")
    assert flowers.pretrained_weights["reinitialised"] == ["classifier"]
    assert torch.equal(flowers.conv_stem.weight, theirs.conv_stem.weight)
    # the same file as a checkpoint to evaluate (evaluate.py checkpoint=, compress.py checkpoint=): loaded strictly
    loaded = load_model(create_classifier("mobilenetv3_small_100", 1000), tmp_path / "model.safetensors").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), theirs(images), atol=1e-4, rtol=1e-4)


def test_an_edgecomp_yolov8_checkpoint_loads_strictly_with_its_aliased_head(tmp_path):
    """The adapter holds its Detect head twice (`network.model.22` and `detect`), so its own state_dict names every
    head tensor twice: both names pair, neither is reported as unexpected."""
    torch.manual_seed(0)
    source = YOLOv8Adapter(4, SIZE)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "last.ckpt")
    torch.manual_seed(1)
    loaded = load_weights(YOLOv8Adapter(4, SIZE), tmp_path / "last.ckpt")
    assert torch.equal(loaded.detect.cv3[0][2].weight, source.detect.cv3[0][2].weight)
