import pytest
import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.models.checkpoint import load_state_dict, load_weights


class RunsCode:
    """Unpickling this calls os.system: what weights_only=True must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


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
