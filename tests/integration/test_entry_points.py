"""The entry points run in-process on a command line (run_in_process: the script's own Hydra main, its output and exit
status): an emulated Jetson said so in the record, bad input refused before any work, compress.py training the
baseline it lacks (tests/e2e/test_cli.py: the same entry points as processes)."""

from pathlib import Path

import torch

from tests.conftest import EAGER, read_jsonl, run_in_process


def test_evaluate_on_an_emulated_jetson_says_so(trained, data_dir, tmp_path):
    baseline = trained("smoke").record  # the session's `python train.py experiment=smoke`
    run_in_process(
        "evaluate.py",
        "experiment=smoke",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        f"checkpoint={baseline['checkpoint']}",
        "device=jetson_xavier_nx",
        "logger=none",
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    # Not the board (this test never runs on a Xavier NX): emulated, on the GPU if there is one, and it says so.
    assert record["device"] == "jetson_xavier_nx" and "not a Jetson Xavier NX" in record["hardware"]
    assert record["runtime"]["threads"] == 6 and record["runtime"]["emulated"] is True
    assert record["runtime"]["accelerator"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_an_unknown_group_option_fails_before_any_work(tmp_path):
    proc = run_in_process("train.py", "model=mobilenetv3_tiny", f"paths.results={tmp_path}", check=False)
    assert proc.returncode != 0 and "Could not find 'model/mobilenetv3_tiny'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_task_that_does_not_match_the_dataset_is_refused(tmp_path):
    proc = run_in_process("train.py", "task=detection", f"paths.results={tmp_path}", check=False)
    assert proc.returncode == 1 and "dataset=synthetic_cls is a classification dataset" in proc.stderr


def test_a_missing_dataset_root_is_one_clear_line(tmp_path):
    proc = run_in_process(
        "train.py", "dataset=flowers102", f"dataset.root={tmp_path}/flowers", f"paths.results={tmp_path}", check=False
    )
    assert proc.returncode == 1
    assert f"edgecomp: error: flowers102: dataset root {tmp_path}/flowers does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_compress_without_a_baseline_trains_it_first(tmp_path, data_dir):
    common = ["experiment=smoke", "trainer.max_epochs=1", EAGER, f"paths.results={tmp_path}", f"paths.data={data_dir}"]
    first = run_in_process("compress.py", *common, "logger=none")
    assert "no finished baseline for this config" in first.stderr + first.stdout
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert Path(record["baseline"]["checkpoint"]).is_file() and record["baseline"]["metrics"]["top1"] >= 0
    second = run_in_process("compress.py", *common, "logger=none", "seed=5")  # another seed is another baseline
    assert "no finished baseline for this config" in second.stderr + second.stdout


def test_a_baseline_trained_until_converged_says_so_in_its_records_and_hands_on_its_best_epoch(tmp_path, data_dir):
    # min_delta 1.0: no epoch improves top-1 by a whole unit, so the rule fires after patience=1 epoch, at epoch 2
    common = [
        "experiment=smoke",
        "convergence=plateau",
        "convergence.patience=1",
        "convergence.min_delta=1.0",
        "convergence.min_epochs=1",
        "trainer.max_epochs=4",
        EAGER,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        "logger=none",
    ]
    run_in_process("train.py", *common)
    compressing = run_in_process("compress.py", *common, "compressor=prune_unstructured", "compressor.epochs=0")
    assert "reusing the baseline trained with this config" in compressing.stderr + compressing.stdout
    trained, compressed = read_jsonl(tmp_path / "records.jsonl")
    assert trained["training"]["stopped"] == "plateau" and trained["training"]["epochs"] == 2
    assert trained["training"]["max_epochs"] == 4 and trained["training"]["monitor"] == "val/top1"
    assert Path(trained["checkpoint"]).name == "best.ckpt"
    # compress.py found the converged run (no second training, above) and compressed its best epoch
    assert compressed["training"] == trained["training"]
    assert compressed["baseline"]["checkpoint"] == trained["checkpoint"]
