"""experiment=edge_benchmark: KD runs in the paper's direction (the trained base model teaches a MobileNetV3-Small
student), and a missing weight file stops compress.py before any work, naming it (tests/unit/test_edge_benchmark_configs.py:
the sweep and the transfer protocol compose)."""

from __future__ import annotations

import pytest
import torch

from edgecomp.compress.context import RunSpec
from edgecomp.config import build
from edgecomp.models.timm_classifier import create_classifier
from tests.conftest import run_in_process

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_kd_into_the_small_student_is_taught_by_the_trained_base_model(tmp_path, compression_context_for):
    cfg, context = compression_context_for(
        "experiment=smoke", "model=mobilenetv3_large_100", "compressor=kd_into_mobilenetv3_small", "compressor.epochs=1"
    )
    compressor = build(cfg.compressor)
    compressor.check(RunSpec.from_config(cfg))
    compressor.prepare(context)
    teacher = build(cfg.model)
    student = compressor.compress(teacher, context)
    assert compressor.teacher is teacher  # the baseline passed in, not a separately trained teacher
    reference = create_classifier("mobilenetv3_small_100", cfg.dataset.num_classes)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 2
    settings = {**compressor.settings(), **compressor.results()}
    assert (settings["teacher"], settings["student"]) == ("mobilenetv3_large_100", "mobilenetv3_small_100")
    assert torch.isfinite(torch.tensor(settings["loss"]["last"]))
    assert not (tmp_path / "runs").exists()  # no teacher was trained: the baseline is the teacher


def test_a_missing_weight_file_stops_the_job_before_any_work_naming_it(tmp_path):
    (tmp_path / "weights").mkdir()
    proc = run_in_process(
        "compress.py",
        "experiment=edge_benchmark_transfer",
        f"weights_dir={tmp_path / 'weights'}",
        "model=densenet169",
        "compressor=none",
        "seed=0",
        f"paths.results={tmp_path / 'results'}",
        f"paths.data={tmp_path / 'data'}",
        check=False,
    )
    assert proc.returncode == 2
    assert (
        f"edgecomp: error: weights_dir={tmp_path / 'weights'} holds no weights file for model densenet169: looked for "
        "densenet169.safetensors, densenet169.pth, densenet169.pt, densenet169.bin"
    ) in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results" / "records.jsonl").exists()


def test_the_kd_control_trains_the_same_student_whatever_the_teacher(compression_context_for):
    """alpha=1 weighs the teacher's term at nothing: two teachers give the same student, weight for weight, and a
    distilled one (alpha=0.1) another."""
    students = {}
    for teacher, compressor in (
        ("mobilenetv3_large_100", "kd_control"),
        ("mobilenetv3_small_100", "kd_control"),
        ("mobilenetv3_small_100", "kd_into_mobilenetv3_small"),
    ):
        cfg, context = compression_context_for(
            "experiment=smoke", f"model={teacher}", f"compressor={compressor}", "compressor.epochs=1"
        )
        compressor_ = build(cfg.compressor)
        compressor_.prepare(context)
        torch.manual_seed(1)  # the teachers' own random weights: different networks, different logits
        students[(teacher, compressor)] = compressor_.compress(build(cfg.model), context).state_dict()
    first, second, distilled = students.values()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], distilled[name]) for name in first)
