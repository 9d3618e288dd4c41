"""device=remote against a real OpenSSH server on 127.0.0.1 (tests/helpers/ssh_board.py): the file copied once and
run and timed by the board program, its outputs equal to the host's, its latency the host's within the host's noise
(the board is this machine), TensorRT through a stand-in trtexec, a copy that fails its hash never kept, and each
fault (wrong port, refused key, no interpreter, no onnxruntime, no trtexec) one line before any work, gone once the
setting is right."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.hardware import cpu_name
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.paired_latency import Side, time_alternately
from edgecomp.evaluate.remote.client import PROGRAM, sha256_of
from edgecomp.evaluate.remote.ssh import RemoteError
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from tests.helpers.ssh_board import (
    HOME,
    LOGIN,
    PYTHON_WITH_TRTEXEC,
    PYTHON_WITHOUT_ONNXRUNTIME,
    free_port,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def host_outputs(path, images: torch.Tensor) -> np.ndarray:
    local = OnnxRuntime().load(path, TargetDevice("cpu", "cpu", OnnxRuntime(), threads=1))
    return local(local.prepare(images))


def test_the_board_runs_and_times_the_file_it_was_sent_once(ssh_board, random_mobilenet):
    _, path = random_mobilenet
    device = ssh_board.device(remote_accuracy=True)
    device.check()
    # what the probe read on the board (this machine, logged in as the board's user)
    assert device.hardware.startswith(cpu_name()) and device.hardware.endswith(f"at {LOGIN}@127.0.0.1:{ssh_board.port}")
    details = device.runtime.details(device, "fp32")
    assert "engine_precision" not in details  # ONNX Runtime runs the file at its own precision
    assert details["remote"] == f"{LOGIN}@127.0.0.1:{ssh_board.port}" and details["accuracy_on"] == "board"
    import onnxruntime

    assert details["onnxruntime_version"] == onnxruntime.__version__
    images = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        predictor = device.runtime.load(path, device)
        outputs = predictor(predictor.prepare(images))
        # the board's ONNX Runtime on the same file and input: the host's outputs
        np.testing.assert_allclose(outputs, host_outputs(path, images), rtol=0, atol=1e-5)
        batches = [predictor.prepare(images[i : i + 1]) for i in range(5)]
        passes = predictor.time_passes(batches, 5, 4)
        assert len(passes) == 4 and all(0 < ms < 1000 for ms in passes)
        predictor.close()
    copied = list((HOME / ssh_board.workdir / "artifacts").iterdir())
    assert [file.name for file in copied] == [f"{sha256_of(path)}.onnx"]  # once, by content, nothing partial


def test_latency_on_the_board_is_the_host_s_within_its_noise(ssh_board, random_mobilenet):
    """The board is this machine: the same file timed here and there, in alternating rounds, reads the same within
    the host's noise (two identical files read 0.73-1.36 of each other here); a timing that took in the network or
    the board program's start-up would read several times slower."""
    _, path = random_mobilenet
    device = ssh_board.device()
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    protocol = LatencyProtocol(images=8, runs=12, warmup=1, rounds=6)
    sides = [Side(OnnxRuntime(), path, "host"), Side(device.runtime, path, "board")]
    ratio = time_alternately(sides, images, device, protocol).ratio(1, 0)
    assert 0.6 < ratio.ratio < 1.6, ratio


def test_a_copy_that_fails_its_hash_is_never_kept(ssh_board, random_mobilenet):
    _, path = random_mobilenet
    device = ssh_board.device()
    remote = device.board.path("artifacts", "cut-short.onnx")
    with pytest.raises(RemoteError, match="SHA-256 did not match") as refused:
        device.board.put(path, remote, sha256="0" * 64)  # what a copy cut short looks like on the board
    assert "\n" not in str(refused.value)
    leftovers = [p.name for p in (HOME / ssh_board.workdir / "artifacts").iterdir() if p.name.startswith("cut-short")]
    assert leftovers == []  # neither the file nor its temporary copy: a rerun copies it again


def test_tensorrt_builds_one_engine_per_file_and_runs_and_times_it_with_trtexec(ssh_board, random_mobilenet):
    _, path = random_mobilenet
    device = ssh_board.device(runtime="tensorrt", accelerator="cuda", precision="fp16", python=PYTHON_WITH_TRTEXEC)
    device.check()
    details = device.runtime.details(device, "fp32")
    assert details["accuracy_on"] == "board"  # TensorRT's numerics are its own
    assert details["engine_precision"] == "fp16"  # an FP32 file, built into an FP16 engine (the profile's)
    assert device.runtime.details(device, "int8")["engine_precision"] == "int8"
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        predictor = device.runtime.load(path, device)
        np.testing.assert_allclose(predictor(predictor.prepare(images)), host_outputs(path, images), atol=1e-5)
        passes = predictor.time_passes([predictor.prepare(images[i : i + 1]) for i in range(3)], 3, 2)
        assert len(passes) == 2 and all(ms > 0 for ms in passes)
        predictor.close()
    calls = [line for line in (HOME / "fake-trtexec.log").read_text().splitlines() if ssh_board.workdir in line]
    builds = [line for line in calls if "--saveEngine=" in line]
    assert len(builds) == 1 and "--fp16" in builds[0] and "--optShapes=input:1x3x64x64" in builds[0]
    timings = [line for line in calls if "--exportTimes=" in line]
    assert len(timings) == 2 and all("--iterations=6" in line for line in timings)  # 2 passes x 3 images, batch 1


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"port": "free"}, "connection refused"),
        ({"identity_file": "stranger"}, "the board refused the login"),
        ({"python": "/opt/no/such/python"}, "is not on the board"),
        ({"python": str(PYTHON_WITHOUT_ONNXRUNTIME)}, "onnxruntime does not import"),
        ({"runtime": "tensorrt", "accelerator": "cuda", "precision": "fp16"}, "needs trtexec on the board"),
    ],
)
def test_each_fault_stops_in_one_line_and_is_gone_once_the_setting_is_right(ssh_board, tmp_path, fault, says):
    settings = dict(fault)
    if settings.get("port") == "free":
        settings["port"] = free_port()
    if settings.get("identity_file") == "stranger":
        stranger = tmp_path / "stranger"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
        settings["identity_file"] = str(stranger)
    with pytest.raises(RemoteError) as stopped:
        ssh_board.device(**settings).check()
    message = str(stopped.value)
    assert says in message and "\n" not in message and "127.0.0.1" in message
    ssh_board.device().check()  # the same board, the setting put right


def test_the_board_program_runs_on_python_3_6(tmp_path):
    """JetPack 4.6's Python (the Jetson Nano's last): the program's probe runs on it, where this machine has one."""
    python36 = next(iter(sorted(Path("/root/.pyenv/versions").glob("3.6.*/bin/python"))), None)
    python36 = python36 or shutil.which("python3.6")
    if python36 is None:
        pytest.skip("no Python 3.6 interpreter here (pyenv's or python3.6 on the PATH)")
    done = subprocess.run([str(python36), str(PROGRAM), "probe"], capture_output=True, text=True, check=True)
    facts = json.loads(done.stdout)
    assert facts["python"].startswith("3.6.") and facts["cpu"] == cpu_name()
