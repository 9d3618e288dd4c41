"""PTQ refuses a CUDA target on a machine with a GPU (tests/integration/test_refusals.py: every compressor's
refusals through compress.py)."""

from __future__ import annotations

import pytest
import torch

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.errors import ConfigError
from tests.conftest import compose_config


@pytest.mark.parametrize("compressor", ["ptq_fp16", "ptq_int8"])
def test_ptq_refuses_a_cuda_target_where_there_is_a_gpu(compressor, monkeypatch):
    """On a GPU machine the CUDA device builds; PTQ's deployment there (TensorRT) is not built by edgecomp yet, and it
    says so instead of measuring ONNX Runtime on the CPU under a CUDA device's name."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "a test GPU", raising=False)
    cfg = compose_config("compress", ["experiment=smoke", f"compressor={compressor}", "device=cuda"])
    with pytest.raises(ConfigError, match=f"compressor={compressor} on device=cuda: .*use device=cpu"):
        build(cfg.compressor).check(RunSpec.from_config(cfg))
