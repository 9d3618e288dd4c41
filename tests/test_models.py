import pytest
import timm
import torch

from edgecomp.config import build
from edgecomp.errors import CheckpointError
from edgecomp.models.timm_classifier import create_classifier
from tests.conftest import CONF, compose_config

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_the_six_benchmark_models_are_configured():
    assert MODELS == sorted(
        [
            "mobilenetv3_small_100",
            "mobilenetv3_large_100",
            "efficientnet_b1",
            "efficientnet_b3",
            "densenet169",
            "densenet201",
        ]
    )


@pytest.mark.parametrize("name", MODELS)
def test_model_and_teacher_options_build_random_init_classifiers(name):
    cfg = compose_config("train", [f"model={name}", f"teacher={name}", "dataset.num_classes=7"])
    model = build(cfg.model).eval()
    assert type(model) is type(build(cfg.teacher))
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


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
