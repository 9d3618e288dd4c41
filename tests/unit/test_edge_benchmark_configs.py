"""experiment=edge_benchmark's configs: the paper's sweep composes job by job, and the transfer protocol starts every
model and the KD student from its file (tests/integration/test_edge_benchmark.py: KD in the paper's direction, and a
missing weight file refused)."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir

from edgecomp.compress.context import RunSpec
from edgecomp.config import build, resolved_config
from tests.conftest import CONF, compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sweep_params() -> dict[str, list[str]]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="compress"):
        cfg = compose("compress", ["experiment=edge_benchmark"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
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
        "finetune_control",
        "kd_into_mobilenetv3_small",
        "kd_control",
    }
    sparsities = []
    for model, compressor in itertools.product(params["model"], params["compressor"]):
        cfg = compose_config("compress", ["experiment=edge_benchmark", f"model={model}", f"compressor={compressor}"])
        built = build(cfg.compressor)
        built.check(RunSpec.from_config(cfg))  # nothing a job would refuse before any work
        if compressor.startswith("prune"):
            sparsities.append(built.options.sparsity)
    assert sorted(set(sparsities)) == [0.25, 0.5, 0.75]


def test_baselines_train_until_converged_and_kd_gets_its_control():
    cfg = compose_config("compress", ["experiment=edge_benchmark", "compressor=prune_50"])
    assert cfg.convergence.monitor == "val/top1" and cfg.trainer.max_epochs == 30
    assert cfg.dataset.num_classes == 20 and cfg.dataset.image_size == 48
    kd, kd_control = (
        build(compose_config("compress", ["experiment=edge_benchmark", f"compressor={name}"]).compressor)
        for name in ("kd_into_mobilenetv3_small", "kd_control")
    )
    # The KD control is the same student, epochs and rate on the labels alone.
    assert kd_control.options.alpha == 1.0 and kd.options.alpha < 1.0
    assert kd_control.settings() | {"alpha": kd.options.alpha} == kd.settings()
    # A dataset given on the command line replaces the benchmark's generated set, classes and all.
    flowers = compose_config("compress", ["experiment=edge_benchmark", "dataset=flowers102", "dataset.root=/x"])
    assert flowers.dataset.num_classes == 102


def test_the_transfer_protocol_starts_every_model_and_the_kd_student_from_its_file(tmp_path):
    (tmp_path / "efficientnet_b1.safetensors").touch()
    (tmp_path / "mobilenetv3_small_100.pth").touch()
    overrides = [f"weights_dir={tmp_path}", "model=efficientnet_b1", "compressor=kd_into_mobilenetv3_small"]
    config = resolved_config(compose_config("compress", ["experiment=edge_benchmark_transfer", *overrides]))
    assert config["model"]["pretrained_file"] == str(tmp_path / "efficientnet_b1.safetensors")
    assert config["compressor"]["student"]["pretrained_file"] == str(tmp_path / "mobilenetv3_small_100.pth")
    assert config["trainer"]["max_epochs"] == 10
    assert config["convergence"]["min_epochs"] >= 10  # the paper's 10 fine-tuning epochs, the best one kept
    # without weights_dir, no model has a file (the default presets are unchanged)
    assert (
        resolved_config(compose_config("compress", ["experiment=edge_benchmark"]))["model"]["pretrained_file"] is None
    )


def test_the_fine_tune_control_trains_as_long_and_as_fast_as_pruning_does():
    pruning = build(compose_config("compress", ["compressor=prune_50"]).compressor).options
    control = build(compose_config("compress", ["compressor=finetune_control"]).compressor)
    # pruning's fine-tune holds its rate constant (no schedule): the control too, whatever trainer.max_epochs is
    assert (control.options.epochs, control.options.lr) == (pruning.epochs, pruning.lr)
    assert control.options.lr_schedule is False and control.name == "finetune_control"  # its own row in the report
    long_run = build(compose_config("compress", ["compressor=finetune_control", "trainer.max_epochs=60"]).compressor)
    assert long_run.options.epochs == pruning.epochs
