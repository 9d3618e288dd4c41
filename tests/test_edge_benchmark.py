"""experiment=edge_benchmark: the paper's sweep composes job by job, and KD runs in the paper's direction (the
trained base model teaches a MobileNetV3-Small student)."""

from __future__ import annotations

import itertools

import pytest
import torch
from hydra import compose, initialize_config_dir

from edgecomp.compress.context import RunSpec
from edgecomp.config import build, resolved_config
from edgecomp.models.timm_classifier import create_classifier
from edgecomp.pipelines.common import start_job
from edgecomp.pipelines.compress import compression_context
from tests.conftest import CONF, compose_config, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sweep_params() -> dict[str, list[str]]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="compress"):
        cfg = compose("compress", ["experiment=edge_benchmark"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.trainer.max_epochs == 5
    return {key: value.split(",") for key, value in cfg.hydra.sweeper.params.items()}


def test_the_sweep_is_the_papers_grid_and_every_job_composes():
    params = sweep_params()
    assert len(params["model"]) == 6 and params["seed"] == ["0", "1", "2"]
    assert set(params["compressor"]) == {
        "none",
        "ptq_fp16",
        "ptq_int8",
        "prune_25",
        "prune_50",
        "prune_75",
        "kd_into_mobilenetv3_small",
    }
    sparsities = []
    for model, compressor in itertools.product(params["model"], params["compressor"]):
        cfg = compose_config("compress", ["experiment=edge_benchmark", f"model={model}", f"compressor={compressor}"])
        built = build(cfg.compressor)
        built.check(RunSpec.from_config(cfg))  # nothing a job would refuse before any work
        if compressor.startswith("prune"):
            sparsities.append(built.options.sparsity)
    assert sorted(set(sparsities)) == [0.25, 0.5, 0.75]


def test_kd_into_the_small_student_is_taught_by_the_trained_base_model(tmp_path, data_dir):
    cfg = compose_config(
        "compress",
        [
            "experiment=smoke",
            "model=mobilenetv3_large_100",
            "compressor=kd_into_mobilenetv3_small",
            "compressor.epochs=1",
            f"paths.results={tmp_path}",
            f"paths.data={data_dir}",
            "logger=none",
        ],
    )
    job = start_job(cfg)
    compressor = build(cfg.compressor)
    compressor.check(RunSpec.from_config(cfg))
    context = compression_context(job)
    compressor.prepare(context)
    teacher = job.new_model()
    student = compressor.compress(teacher, context)
    assert compressor.teacher is teacher  # the baseline passed in, not a separately trained teacher
    reference = create_classifier("mobilenetv3_small_100", cfg.dataset.num_classes)
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 2
    settings = {**compressor.settings(), **compressor.results()}
    assert (settings["teacher"], settings["student"]) == ("mobilenetv3_large_100", "mobilenetv3_small_100")
    assert torch.isfinite(torch.tensor(settings["loss"]["last"]))
    assert not (tmp_path / "runs").exists()  # no teacher was trained: the baseline is the teacher


def test_the_transfer_protocol_starts_every_model_and_the_kd_student_from_its_file(tmp_path):
    (tmp_path / "efficientnet_b1.safetensors").touch()
    (tmp_path / "mobilenetv3_small_100.pth").touch()
    overrides = [f"weights_dir={tmp_path}", "model=efficientnet_b1", "compressor=kd_into_mobilenetv3_small"]
    config = resolved_config(compose_config("compress", ["experiment=edge_benchmark_transfer", *overrides]))
    assert config["model"]["pretrained_file"] == str(tmp_path / "efficientnet_b1.safetensors")
    assert config["compressor"]["student"]["pretrained_file"] == str(tmp_path / "mobilenetv3_small_100.pth")
    assert config["trainer"]["max_epochs"] == 10
    # without weights_dir, no model has a file (the default presets are unchanged)
    assert resolved_config(compose_config("compress", ["experiment=edge_benchmark"]))["model"]["pretrained_file"] is None


def test_a_missing_weight_file_stops_the_job_before_any_work_naming_it(tmp_path):
    (tmp_path / "weights").mkdir()
    proc = run_cli(
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
