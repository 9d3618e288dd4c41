"""compressor=scalekd through compress.py (slow): baseline and teacher trained, the distilled student measured
against the baseline, the record's distill field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgecomp.models.checkpoint import load_state_dict
from tests.conftest import read_jsonl, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_compress_py_experiment_smoke_scalekd_end_to_end(tmp_path, data_dir):
    """`python compress.py experiment=smoke_scalekd` as a user runs it: baseline and teacher trained, the distilled
    student measured against the baseline, the record's distill field."""
    run_cli("compress.py", "experiment=smoke_scalekd", "logger=none", "trainer.enable_progress_bar=false",
            f"paths.results={tmp_path}", f"paths.data={data_dir}", timeout=900)  # fmt: skip
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["compressor"] == "scalekd" and record["model"] == "yolov8n"
    # The deployed file is the distilled student alone: the baseline's tensors (no CSA, no SDF, no teacher), trained
    # to other values.
    student, baseline = load_state_dict(record["checkpoint"]), load_state_dict(record["baseline"]["checkpoint"])
    assert {k: v.shape for k, v in student.items()} == {k: v.shape for k, v in baseline.items()}
    assert not all(torch.equal(v, baseline[k]) for k, v in student.items())
    assert record["distill"]["deployed_params_equal_baseline"] is True
    assert {"loss_feat", "loss_cls", "loss_bbox", "loss_det"} <= set(record["distill"])
    assert record["compression"]["teacher"] == "yolov8s" and record["compression"]["teacher_scale"] == 2.0
    assert record["compression"]["teacher_input"] == "native"  # trained and distilled on the 256 px letterbox
    teacher_run = Path(record["compression"]["teacher_checkpoint"]).parents[1]
    assert teacher_run.name.startswith("synthetic_sod-yolov8s-") and (teacher_run / "model.pt").is_file()
    assert Path(record["checkpoint"]).is_file()
