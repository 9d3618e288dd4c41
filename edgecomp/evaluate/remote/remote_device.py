"""A board on the network as the target device (`device=remote` and its presets): the deployed file is timed, and
where its numerics may differ scored, on the board itself over SSH (edgecomp.evaluate.remote.remote_runtime).

`check()` (called before any work) connects, with a 10 s timeout, copies the board program if this version is not
there, and probes the board: its interpreter and numpy, then the runtime the profile names (ONNX Runtime with the
provider of `accelerator`, or trtexec) and, for a preset of a known board (`profile_of`), that the board is one. Any
failure stops the run in one line that says what to do. The record's `hardware` is the board's (what the probe read:
its model, CPU, memory, L4T release) and `runtime` names the board, its interpreter and its runtime's version.
"""

from __future__ import annotations

import os

import torch

from edgecomp.evaluate.device import DEFAULT_CHANNEL_DIVISOR, TargetDevice, check_profile
from edgecomp.evaluate.remote.client import Board
from edgecomp.evaluate.remote.remote_runtime import RemoteRuntime
from edgecomp.evaluate.remote.ssh import RemoteError, SshConnection, SshTarget
from edgecomp.evaluate.runtimes.onnxruntime import PROVIDERS


def home_relative(path: str | os.PathLike) -> str:
    path = str(path)
    return path[2:] or "." if path.startswith("~/") else path


class RemoteDevice(TargetDevice):
    def __init__(
        self,
        name: str,
        host: str | None,
        user: str | None = None,
        port: int | None = None,
        identity_file: str | None = None,
        known_hosts_file: str | None = None,
        ssh_options: list[str] | tuple[str, ...] = (),
        python: str = "python3",
        workdir: str = "edgecomp-board",
        runtime: str = "onnxruntime",
        remote_accuracy: bool | None = None,
        accelerator: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 1,
        threads: int | None = None,
        profile_of: str | None = None,
        channel_divisor: int = DEFAULT_CHANNEL_DIVISOR,
    ) -> None:
        check_profile(accelerator, precision, batch_size, threads, channel_divisor)
        if not host:
            raise RemoteError(
                f"device={name} needs the board's address: device.host=NAME (an address, a host name, or a Host of "
                "~/.ssh/config), and device.user, device.port, device.identity_file where ssh's defaults do not fit"
            )
        if runtime == "onnxruntime" and precision != "fp32":
            raise RemoteError(
                f"device={name}: ONNX Runtime runs each file at the file's own precision (PTQ makes the FP16 and INT8 "
                f"files); precision={precision!r} needs device.runtime=tensorrt"
            )
        if runtime == "tensorrt" and accelerator != "cuda":
            raise RemoteError(f"device={name}: device.runtime=tensorrt runs on the board's GPU: accelerator=cuda")
        target = SshTarget(host, user, port, identity_file, known_hosts_file, tuple(ssh_options))
        # `~/x` on the board is `x` from the login's home, where ssh starts (a quoted `~` would not be expanded)
        self.board = Board(SshConnection(target), home_relative(python), home_relative(workdir))
        self.name = name
        self.runtime = RemoteRuntime(self.board, runtime, remote_accuracy)
        self.accelerator, self.precision = accelerator, precision
        self.batch_size = batch_size
        self.threads = threads
        self.profile_of = profile_of
        self.channel_divisor = channel_divisor
        self.requested = {"accelerator": accelerator, "precision": precision}
        self.on_target = True  # what is measured is the board itself

    def check(self) -> None:
        facts = self.board.facts  # connects, copies the program, probes the interpreter and numpy
        where = f"device={self.name} ({self.board.address})"
        if self.runtime.name == "onnxruntime":
            if facts.get("onnxruntime") is None:
                raise RemoteError(
                    f"{where}: onnxruntime does not import in device.python={self.board.python} on the board "
                    f"({facts.get('onnxruntime_error')}); install it there: {self.board.python} -m pip install "
                    "onnxruntime (onnxruntime-gpu for accelerator=cuda), or set device.python to an interpreter that "
                    "has it"
                )
            provider = PROVIDERS[self.accelerator]
            if provider not in facts.get("providers", []):
                raise RemoteError(
                    f"{where}: the board's onnxruntime {facts['onnxruntime']} has no {provider} (it has "
                    f"{facts.get('providers')}); use accelerator=cpu, or install onnxruntime-gpu there"
                )
        elif facts.get("trtexec") is None:
            raise RemoteError(
                f"{where}: device.runtime=tensorrt needs trtexec on the board (on a Jetson: /usr/src/tensorrt/bin, "
                "part of JetPack); put it on the PATH of the login, or use device.runtime=onnxruntime"
            )
        board = facts.get("board") or facts.get("cpu") or ""
        if self.profile_of and self.profile_of.lower() not in board.lower():
            raise RemoteError(
                f"{where}: the profile is for a {self.profile_of}, but the board says it is {board!r} "
                "(/proc/device-tree/model); use device=remote for another board"
            )

    @property
    def torch_device(self) -> torch.device:
        """Where the host runs what it runs of the model (training, FastNAS's search, an eager evaluation): this
        machine's CPU, whatever the board's accelerator."""
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def hardware(self) -> str:
        """The board as its probe read it, e.g. `NVIDIA Jetson Nano Developer Kit (ARMv8 Processor rev 1 (v8l), 4
        logical CPUs, Arm NEON, 3.9 GiB, # R32 (release), REVISION: 7.1, ..., Python 3.6.9, TensorRT 8.2.1) at
        jetson@nano.local`."""
        facts = self.board.facts
        memory = facts.get("memory_bytes")
        parts = [
            facts.get("cpu"),
            f"{facts.get('logical_cpus')} logical CPUs",
            facts.get("int8_instructions"),
            f"{memory / 2**30:.1f} GiB" if memory else None,
            facts.get("tegra_release"),
            f"Python {facts.get('python')}",
            f"onnxruntime {facts['onnxruntime']}" if self.runtime.name == "onnxruntime" else None,
            f"TensorRT {facts.get('tensorrt') or '(version unknown)'}" if self.runtime.name == "tensorrt" else None,
        ]
        described = ", ".join(str(part) for part in parts if part)
        board = facts.get("board")
        return f"{board + ' (' + described + ')' if board else described} at {self.board.address}"
