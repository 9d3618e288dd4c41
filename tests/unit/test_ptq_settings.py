"""compressor=ptq_int8's settings and targets refused before any work (tests/integration/test_ptq.py: the
quantized files)."""

from __future__ import annotations

import pytest

from edgecomp.compress.quantization.ptq_int8 import Int8Quantization
from edgecomp.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bad_settings_and_targets_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="compressor.calibrate_method=median: expected"):
        Int8Quantization("ptq_int8", calibrate_method="median")
    with pytest.raises(ConfigError, match="calib_images=0"):
        Int8Quantization("ptq_int8", calib_images=0)
    # The task and the device are refused by check(), before any work: tests/integration/test_refusals.py drives
    # compress.py.
