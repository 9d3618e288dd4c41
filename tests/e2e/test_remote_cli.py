"""The entry points with device=remote, against a real OpenSSH server on 127.0.0.1 (tests/helpers/ssh_board.py): the
records' hardware and runtime are the board's, the metrics those of device=cpu on the same file, a board that goes
away in mid-measurement stops the run in one line with no record, and the rerun succeeds once it is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, read_jsonl, run_in_process
from tests.helpers.ssh_board import LOGIN, PYTHON_WITHOUT_ONNXRUNTIME

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def check_board_record(record: dict, ssh_board, accuracy_on: str) -> None:
    address = f"{LOGIN}@127.0.0.1:{ssh_board.port}"
    assert record["device"] == "remote" and record["hardware"].endswith(f"at {address}")
    runtime = record["runtime"]
    assert (runtime["remote"], runtime["runtime"], runtime["accuracy_on"]) == (address, "onnxruntime", accuracy_on)
    assert runtime["emulated"] is False and runtime["board_python"]


def test_train_measures_on_the_board_and_scores_what_device_cpu_scores(ssh_board, trained, data_dir, tmp_path):
    on_cpu = trained("smoke").record  # the session's `python train.py experiment=smoke` (device=cpu)
    run_in_process(
        "train.py", "experiment=smoke", f"paths.results={tmp_path}", f"paths.data={data_dir}", "logger=none",
        *ssh_board.overrides(remote_accuracy="true"),
    )  # fmt: skip
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    check_board_record(record, ssh_board, accuracy_on="board")
    # the same seed's weights, the same FP32 file, the board's ONNX Runtime: the host's top-1
    assert record["metrics"]["top1"] == on_cpu["metrics"]["top1"]
    assert record["size_bytes"] == on_cpu["size_bytes"] and record["latency_ms"]["runs"] == 10


def test_int8_detector_is_quantized_here_and_scored_and_timed_on_the_board(ssh_board, trained, data_dir, tmp_path):
    checkpoint = trained("smoke_det").checkpoint
    common = ["experiment=smoke_det", "compressor=ptq_int8", f"checkpoint={checkpoint}", f"paths.data={data_dir}"]
    run_in_process("compress.py", *common, f"paths.results={tmp_path / 'cpu'}", "logger=none")
    run_in_process("compress.py", *common, f"paths.results={tmp_path / 'board'}", "logger=none", *ssh_board.overrides())
    (on_cpu,) = read_jsonl(tmp_path / "cpu" / "records.jsonl")
    (record,) = read_jsonl(tmp_path / "board" / "records.jsonl")
    check_board_record(record, ssh_board, accuracy_on="board")  # an INT8 file: scored where it runs, by default
    assert record["runtime"]["precision"] == "int8"
    check_board_record({**record, "runtime": record["baseline"]["runtime"]}, ssh_board, accuracy_on="host")  # FP32
    assert record["metrics"]["map"] == pytest.approx(on_cpu["metrics"]["map"], abs=0.002)
    assert record["size_bytes"] == on_cpu["size_bytes"]  # the same INT8 file


def serving(ssh_board) -> set[int]:
    """The board program's sessions of this board's folder now running (their process ids)."""
    found = subprocess.run(
        ["pgrep", "-u", LOGIN, "-f", f"{ssh_board.workdir}.* serve "], capture_output=True, text=True
    )
    return {int(pid) for pid in found.stdout.split()}


def test_a_board_lost_mid_measurement_stops_the_run_without_a_record_and_the_rerun_succeeds(
    ssh_board, trained, data_dir, tmp_path
):
    checkpoint = trained("smoke").checkpoint
    overrides = [
        "experiment=smoke", f"checkpoint={checkpoint}", f"paths.results={tmp_path}", f"paths.data={data_dir}",
        "logger=none", *ssh_board.overrides(remote_accuracy="true"),
    ]  # fmt: skip
    before = serving(ssh_board)  # sessions another test left: not this run's
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        run = subprocess.Popen(
            [sys.executable, str(REPO / "evaluate.py"), *overrides], cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=stdout, stderr=stderr,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not serving(ssh_board) - before:  # the board program is serving the file: the measurement has begun
            assert run.poll() is None, "the run ended before the board program started"
            assert time.monotonic() < deadline, "the board program did not start within 2 minutes"
            time.sleep(0.02)
        ssh_board.stop()
        run.wait(timeout=120)
    printed = (tmp_path / "stderr").read_text()
    said = [line for line in printed.splitlines() if line.startswith("edgecomp: error:")]
    assert run.returncode == 1 and len(said) == 1, printed[-3000:]
    # the lost session retried once, against a server that is gone: refused
    assert "device=remote" in said[0] and "connection refused" in said[0] and "retried once" in said[0], said
    assert not (tmp_path / "records.jsonl").exists()
    ssh_board.start()  # the board is back
    run_in_process("evaluate.py", *overrides)
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    check_board_record(record, ssh_board, accuracy_on="board")
    assert record["metrics"]["top1"] == trained("smoke").record["metrics"]["top1"]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"port": 1}, "connection refused"),
        ({"identity_file": "stranger"}, "the board refused the login"),
        ({"python": str(PYTHON_WITHOUT_ONNXRUNTIME)}, "onnxruntime does not import"),
    ],
)
def test_a_fault_stops_the_command_in_one_line_before_any_work(ssh_board, tmp_path, fault, says):
    if fault.get("identity_file") == "stranger":  # a key the board does not know
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
        fault = {"identity_file": tmp_path / "key"}
    proc = run_in_process(
        "train.py", "experiment=smoke", f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}", "logger=none",
        *ssh_board.overrides(**fault), check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    said = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert len(said) == 1 and says in said[0], proc.stderr[-3000:]
    assert not (tmp_path / "data").exists() and not (tmp_path / "records.jsonl").exists()  # nothing generated
