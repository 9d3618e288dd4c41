"""compressor=fastnas without a search: the model rewrites it relies on (timm's BatchNormAct2d split, YOLOv8's Concat
patch, the view's tensors) and its settings (tests/integration/test_fastnas.py: searches)."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.layers import BatchNormAct2d

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from edgecomp.models.modelopt_artifact import ModelOptView
from edgecomp.models.outputs import flat_tensors
from edgecomp.models.timm_classifier import split_batchnorm_act
from tests.conftest import compose_config


def test_splitting_timms_batchnorm_act_changes_no_output_in_training_or_eval_mode(one_torch_thread):
    torch.manual_seed(0)
    original = timm.create_model("mobilenetv3_small_100", num_classes=5)
    split = copy.deepcopy(original)
    fused = sum(type(m) is BatchNormAct2d for m in original.modules())
    assert split_batchnorm_act(split) == fused > 10
    assert not any(isinstance(m, BatchNormAct2d) for m in split.modules())
    images = torch.rand(4, 3, 64, 64)
    # Training mode: same output, and the running statistics update the same way.
    assert torch.equal(original.train()(images), split.train()(images))
    running = {k: v for k, v in original.state_dict().items() if "running" in k or "num_batches" in k}
    renamed = {k.replace(".bn.", "."): v for k, v in split.state_dict().items()}
    assert all(torch.equal(value, renamed[key]) for key, value in running.items())
    assert torch.equal(original.eval()(images), split.eval()(images))


def test_yolov8s_concat_patch_changes_no_output_and_stays_inside_the_adapter(one_torch_thread):
    from ultralytics.nn.modules import Concat
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    forward_before = Concat.forward
    torch.manual_seed(0)
    adapter = YOLOv8Adapter(num_classes=4, input_size=64, scale="n").eval()
    patched = [m for m in adapter.modules() if isinstance(m, Concat)]
    assert len(patched) == 4 and all(type(m) is not Concat for m in patched)  # YOLOv8's neck has 4 Concat layers

    unpatched = copy.deepcopy(adapter)
    for layer in unpatched.modules():
        if isinstance(layer, Concat):
            layer.__class__ = Concat
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        outputs, reference = flat_tensors(adapter(images)), flat_tensors(unpatched(images))
    assert len(outputs) == 6 and all(torch.equal(a, b) for a, b in zip(outputs, reference, strict=True))

    # Ultralytics' own class and a model built with Ultralytics directly are untouched.
    assert Concat.forward is forward_before
    plain = DetectionModel(yaml_model_load("yolov8n.yaml"), ch=3, verbose=False)
    assert sum(type(m) is Concat for m in plain.modules()) == 4


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("compressor.flops=120%", "compressor.flops"),
        ("compressor.flops=two-thirds", "compressor.flops"),
        ("compressor.flops=0", "compressor.flops"),
        ("compressor.channel_divisor=0", "compressor.channel_divisor"),
        ("compressor.channel_ratios=[0.25,0.5]", "compressor.channel_ratios"),
        ("compressor.epochs=-1", "compressor.epochs"),
        ("compressor.lr=0", "compressor.lr"),
        ("compressor.calibration_batch_size=0", "compressor.calibration_batch_size"),
        ("compressor.search_layers=blocks.4.*", "compressor.search_layers"),
    ],
)
def test_settings_out_of_range_are_refused_when_the_compressor_is_built(override, key):
    cfg = compose_config("compress", ["experiment=smoke", "compressor=fastnas", override])
    with pytest.raises(ConfigError, match=key):
        build(cfg.compressor)


def test_fastnas_yolo_runs_on_synthetic_sod_by_default_and_on_coco128_when_asked():
    default = compose_config("compress", ["experiment=fastnas_yolo"])
    coco = compose_config("compress", ["experiment=fastnas_yolo", "dataset=coco128"])
    assert (default.dataset.name, default.model.name, default.compressor.name) == (
        "synthetic_sod",
        "yolov8n",
        "fastnas",
    )
    assert (coco.dataset.name, coco.dataset.image_size, coco.compressor.flops) == ("coco128", 640, "66%")
    for cfg in (default, coco):
        build(cfg.compressor).check(RunSpec.from_config(cfg))


def test_the_budget_reads_as_a_percentage_or_a_fraction():
    for flops in ("66%", 0.66):
        cfg = compose_config("compress", ["experiment=smoke", "compressor=fastnas", f"compressor.flops={flops}"])
        assert build(cfg.compressor).options.flops_target == "66%"


def test_the_view_hands_modelopt_tensors_not_a_dataclass():
    adapter = YOLOv8Adapter(num_classes=4, input_size=64, scale="n").eval()
    with torch.no_grad():
        outputs = ModelOptView(adapter)(torch.rand(1, 3, 64, 64))
    assert isinstance(outputs, tuple) and len(outputs) == 6 and all(isinstance(t, torch.Tensor) for t in outputs)
