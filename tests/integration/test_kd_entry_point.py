"""compressor=kd through compress.py's command line (run in this process): the teacher trained once and reused, the
distilled student deployed, and a run without a teacher refused in one line before any work."""

from __future__ import annotations

from pathlib import Path

import torch

from edgecomp.models.checkpoint import load_state_dict
from tests.conftest import EAGER, read_jsonl, run_in_process

SMOKE_KD = ["experiment=smoke", "compressor=kd", "logger=none", "trainer.enable_progress_bar=false"]


def test_compress_kd_end_to_end_trains_the_teacher_once_and_deploys_the_distilled_student(tmp_path, data_dir):
    # A teacher config that differs from the student's (dropout) gets a run folder of its own, at the small model's
    # smoke cost; `teacher=mobilenetv3_small_100` alone would be the baseline's own run (self-distillation).
    # Baseline and teacher train for 1 epoch (the smoke budget's half). compressor.lr: a smoke-trained teacher is a
    # poor one whose logits in eval mode are large, and a student distilled from it at the default lr 0.05 diverges.
    common = [
        *SMOKE_KD,
        "teacher=mobilenetv3_small_100",
        "teacher.drop_rate=0.2",
        "compressor.lr=0.01",
        "trainer.max_epochs=1",
        EAGER,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    ]
    # Three trainings (baseline, teacher, student): ~20 s on 2 idle cores, minutes when other jobs share them.
    first = run_in_process("compress.py", *common, "compressor.epochs=2")
    assert "no finished teacher for this config" in first.stderr + first.stdout
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["compressor"] == "kd" and record["model"] == "mobilenetv3_small_100"
    # The deployed file is the distilled student alone: the baseline's tensors (no teacher, no distillation wrapper,
    # which would add tensors or prefix their names), trained to other values.
    student, baseline = load_state_dict(record["checkpoint"]), load_state_dict(record["baseline"]["checkpoint"])
    assert {k: v.shape for k, v in student.items()} == {k: v.shape for k, v in baseline.items()}
    assert not all(torch.equal(v, baseline[k]) for k, v in student.items())
    compression = record["compression"]
    assert compression["loss"]["last"] < compression["loss"]["first"]
    assert compression["time_s"] > 0 and compression["epochs"] == 2 and compression["lr"] == 0.01
    assert compression["teacher"] == "mobilenetv3_small_100" and compression["T"] == 10.0
    assert Path(record["checkpoint"]).is_file() and record["checkpoint"] != record["baseline"]["checkpoint"]

    teacher_run = Path(compression["teacher_checkpoint"]).parents[1]
    baseline_run = Path(record["baseline"]["checkpoint"]).parents[1]
    assert teacher_run.parent == tmp_path / "runs" and teacher_run != baseline_run
    assert (teacher_run / "model.pt").is_file()
    trained_at = (teacher_run / "model.pt").stat().st_mtime_ns

    second = run_in_process("compress.py", *common, "compressor.epochs=1")
    assert "reusing the teacher trained with this config" in second.stderr + second.stdout
    assert "reusing the baseline trained with this config" in second.stderr + second.stdout
    assert (teacher_run / "model.pt").stat().st_mtime_ns == trained_at
    assert read_jsonl(tmp_path / "records.jsonl")[-1]["compression"]["teacher_checkpoint"] == str(
        teacher_run / "checkpoints" / "last.ckpt"
    )


def test_compress_kd_without_a_teacher_stops_before_any_work(tmp_path, data_dir):
    proc = run_in_process("compress.py", *SMOKE_KD, f"paths.results={tmp_path}", f"paths.data={data_dir}", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "teacher=" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "records.jsonl").exists()
