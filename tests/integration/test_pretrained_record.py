"""What a run's record says of the pretrained file its model loaded: evaluate.py's work in-process on the smoke
detection set (tests/unit/test_pretrained.py: the loading itself)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torchvision.models import resnet18
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from edgecomp.pipelines import evaluate
from tests.conftest import compose_config
from tests.helpers.models import randomised

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_record_says_what_a_91_class_file_loaded_into_a_4_class_run(tmp_path, data_dir):
    """Through evaluate.py (in-process, eager PyTorch on the smoke detection set): the record's `weights` names the
    file, its fingerprint and the one re-initialised layer."""
    backbone = _resnet_fpn_extractor(
        resnet18(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )
    path = tmp_path / "retinanet_resnet18_coco.pth"
    torch.save(randomised(RetinaNet(backbone, 91), seed=9).state_dict(), path)
    overrides = ["experiment=smoke_det", "model=retinanet", "device=cpu_torch", f"model.pretrained_file={path}"]
    paths = [f"paths.results={tmp_path / 'results'}", f"paths.data={data_dir}", "logger=none"]
    record = evaluate.run(compose_config("evaluate", [*overrides, *paths]))
    weights = record["weights"]
    assert (weights["file"], weights["format"]) == (str(path), "state_dict")
    assert weights["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert weights["reinitialised"] == ["detector.head.classification_head.cls_logits"]
    assert weights["left_at_init"] == [] and weights["backbone_share"] == 1.0
    assert record["checkpoint"] == str(path)
