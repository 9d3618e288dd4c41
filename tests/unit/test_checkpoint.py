import pytest
import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.models.checkpoint import load_model, load_state_dict, load_weights
from edgecomp.models.timm_classifier import create_classifier
from tests.conftest import RunsCode


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_state_dict(path)
    assert not marker.exists()


def test_lightning_checkpoint_prefix_is_stripped(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 1, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    fresh = load_weights(nn.Linear(3, 2), path)
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)


def test_plain_state_dict_loads(tmp_path):
    model = nn.Linear(3, 2)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert torch.equal(load_weights(nn.Linear(3, 2), tmp_path / "w.pt").weight, model.weight)


def test_shape_mismatch_names_the_file(tmp_path):
    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(nn.Linear(3, 5), tmp_path / "w.pt")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nope.ckpt")


def _saved_linear(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "zip archive is damaged or truncated"),
        (lambda data: b"", "is empty"),
        (lambda data: b"weights = [0.1, 0.2]\n", "is not a PyTorch checkpoint: .* starts with b'weig'"),
        (lambda data: b"\x80\x02" + bytes(range(7, 40)), "pickle data is damaged"),
    ],
    ids=["truncated", "empty", "text", "garbled-pickle"],
)
def test_a_file_that_is_no_checkpoint_is_a_checkpoint_error_naming_it(tmp_path, damage, message):
    path = _saved_linear(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as caught:
        load_weights(nn.Linear(3, 2), path)
    assert str(path) in str(caught.value)


def test_missing_unexpected_and_misshapen_weights_are_each_named(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.zeros(5, 3), "extra.scale": torch.ones(1)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_weights(nn.Linear(3, 2), path)
    message = str(caught.value)
    assert "missing bias" in message and "unexpected extra.scale" in message
    assert "shape mismatch for weight (5, 3) (the model's: (2, 3))" in message


def test_an_error_that_is_not_the_files_fault_is_not_disguised(tmp_path, monkeypatch):
    """A bug (here: torch.load failing for a reason unrelated to the file) keeps its type and traceback."""
    path = _saved_linear(tmp_path)

    def broken_load(*args, **kwargs):
        raise RuntimeError("a bug somewhere inside the loader")

    monkeypatch.setattr(torch, "load", broken_load)
    with pytest.raises(RuntimeError, match="a bug somewhere") as caught:
        load_weights(nn.Linear(3, 2), path)
    assert not isinstance(caught.value, CheckpointError)


def test_a_model_whose_own_loading_fails_raises_its_own_error(tmp_path):
    class Faulty(nn.Linear):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            raise KeyError("a bug in the model's own load_state_dict")

    with pytest.raises(KeyError, match="a bug in the model"):
        load_weights(Faulty(3, 2), _saved_linear(tmp_path))


@pytest.fixture(scope="module")
def pruned_artifact(tmp_path_factory):
    """The smallest FastNAS subnet of a 4-class MobileNetV3-Small, saved as compressor=fastnas saves it."""
    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.utils import sample
    from modelopt.torch.prune.pruning import PruneModeRegistry

    from edgecomp.compress.pruning.fastnas_space import search_space_rules
    from edgecomp.models.modelopt_artifact import ModelOptView, modelopt_conversion, save_artifact

    view = ModelOptView(create_classifier("mobilenetv3_small_100", num_classes=4))
    with modelopt_conversion(view):
        mtn.convert(view, [("fastnas", search_space_rules(16))], registry=PruneModeRegistry)
    sample(view, min)
    mtn.export(view)
    return save_artifact(view, tmp_path_factory.mktemp("fastnas") / "pruned.pth")


def test_a_pruned_artifact_restores_into_its_own_architecture(pruned_artifact):
    full = create_classifier("mobilenetv3_small_100", num_classes=4)
    full_params = sum(p.numel() for p in full.parameters())
    restored = load_model(full, pruned_artifact)
    assert sum(p.numel() for p in restored.parameters()) < 0.8 * full_params


@pytest.mark.parametrize(
    ("name", "num_classes", "message"),
    [
        ("mobilenetv3_large_100", 4, r"missing model\.blocks\..* unexpected"),
        (
            "mobilenetv3_small_100",
            3,
            r"shape mismatch for .*model\.classifier\.weight \(4, 1024\) \(the model.s: \(3, 1024\)\)",
        ),
    ],
)
def test_a_pruned_artifact_of_another_model_is_refused_before_modelopt_runs(
    pruned_artifact, name, num_classes, message
):
    with pytest.raises(CheckpointError, match=message):
        load_model(create_classifier(name, num_classes=num_classes), pruned_artifact)


def test_an_onnx_file_given_as_a_checkpoint_is_named_for_what_it_is(tmp_path):
    from edgecomp.evaluate.onnx_export import export_onnx

    path = export_onnx(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()), tmp_path / "model.onnx", 4)
    with pytest.raises(
        CheckpointError, match="is an ONNX file, a deployed artifact: evaluate it with `evaluate.py artifact="
    ):
        load_weights(nn.Linear(3, 2), path)
