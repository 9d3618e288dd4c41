import gzip

import torch
import torch.nn as nn

from edgecomp.evaluate.flops import count_flops, count_params
from edgecomp.evaluate.size import file_sizes, save_weights, weights_bytes


def test_flops_match_the_analytic_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10 * 10, 5))
    conv_macs = 8 * 10 * 10 * (3 * 3 * 3)  # outputs x (in_channels x kernel area)
    linear_macs = 8 * 10 * 10 * 5
    assert count_flops(model, (1, 3, 10, 10)) == 2 * (conv_macs + linear_macs)
    assert count_flops(model, (2, 3, 10, 10)) == 4 * (conv_macs + linear_macs)  # batch 2: twice the work
    assert count_params(model) == 3 * 8 * 9 + 800 * 5 + 5


def gzip_bytes(data: bytes) -> int:
    """The gzip size as the record defines it, with the standard library: level 9, no timestamp."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def test_weights_file_holds_only_the_state_dict(tmp_path):
    model = nn.Linear(100, 100)
    path = tmp_path / "w.pt"
    size, gz = save_weights(model, path)
    data = path.read_bytes()
    assert (size, gz) == (len(data), gzip_bytes(data))  # the sizes of the file as written
    assert file_sizes(path) == (len(data), gzip_bytes(data))
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {"weight", "bias"}
    assert torch.equal(loaded["weight"], model.weight) and torch.equal(loaded["bias"], model.bias)
    assert 4 * 100 * 101 < size < 4 * 100 * 101 + 4096  # FP32 weights plus the archive's small overhead
    # A record measures the weights in memory: byte for byte the file that is deployed.
    assert weights_bytes(model) == data


def test_gzip_size_falls_when_weights_are_zeroed(tmp_path):
    model = nn.Linear(200, 200)
    _, dense = save_weights(model, tmp_path / "dense.pt")
    with torch.no_grad():
        model.weight[:, :150] = 0.0  # 75 % zeros
    size, sparse = save_weights(model, tmp_path / "sparse.pt")
    assert sparse < 0.5 * dense
    assert sparse == gzip_bytes((tmp_path / "sparse.pt").read_bytes())
