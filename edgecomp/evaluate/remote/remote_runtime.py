"""A board's runtime over SSH: the deployed ONNX file run and timed on the board (edgecomp.evaluate.remote.board).

Deployment is the host's (the same FP32 ONNX export as device=cpu, a quantizer's file as it is); the file is copied to
the board once per content (client.Board.upload) and run there by `engine`: ONNX Runtime with the host's session
settings, or a TensorRT engine built by the board's trtexec. Latency is always the board's: the latency protocol's
passes are run and timed on the board's clock (`time_passes`), the host only sends the fixed images and reads the
per-pass timings back, so the network between them is never in a timing.

Accuracy (`remote_accuracy`): where the board's numerics can differ from the host's, the evaluation images go to the
board and its outputs come back: INT8 files (integer kernels differ from CPU to CPU: VNNI, AVX2's saturating u8s8
products, Arm's dot product) and every TensorRT engine (its own kernels and tactics, FP16 where the profile says).
An FP32 or FP16 file run by ONNX Runtime is scored on the host with the same file instead: its outputs agree with the
board's to float rounding (tested), and the evaluation set need not cross the network. `remote_accuracy: true` or
`false` overrides that default; the record's `runtime.accuracy_on` says which one scored.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.onnx_outputs import OnnxSignature, read_signature
from edgecomp.evaluate.remote.client import Board, BoardSession
from edgecomp.evaluate.remote.ssh import RemoteError
from edgecomp.evaluate.runtimes.onnxruntime import (
    PROVIDERS,
    NumpyPredictor,
    OnnxRuntime,
    OnnxRuntimePredictor,
    session_options,
)
from edgecomp.evaluate.runtimes.runtime import Runtime

ENGINES = ("onnxruntime", "tensorrt")


class RemotePredictor(NumpyPredictor):
    """One file on the board: outputs from the board (or the host, see the module docstring), timings from the board.

    The board session (a `board.py serve` of the file) opens at the first request and closes with the predictor; a
    session lost mid-request is reopened once and the request repeated (requests are idempotent), a second loss
    stops the run with a RemoteError."""

    def __init__(self, runtime: RemoteRuntime, signature: OnnxSignature, device) -> None:
        self.session: BoardSession | None = None  # first: __del__ closes it whatever happens below
        self.runtime = runtime
        self.path = signature.path
        self.device = device
        self.scored_on_board = runtime.scores_on_board(signature.precision)
        self.input_name = signature.input_names[0]
        self.output_names = signature.output_names
        self.image = "x".join(str(dim) for dim in signature.inputs[0][1:])  # C x H x W: TensorRT's profile
        batch = signature.inputs[0][0]
        self.fixed_batch = batch if isinstance(batch, int) else 0  # 0: dynamic
        # A TensorRT engine's precision: the file's INT8 where it is quantized, else the profile's.
        self.precision = "int8" if signature.precision == "int8" else device.precision
        self.remote_path: str | None = None
        self.host: OnnxRuntimePredictor | None = None

    def open(self) -> BoardSession:
        if self.session is None:
            board = self.runtime.board
            self.remote_path = self.remote_path or board.upload(self.path)
            self.session = board.serve(
                "--artifact", self.remote_path, "--engine", self.runtime.name,
                "--threads", str(self.device.threads or 0), "--provider", PROVIDERS[self.device.accelerator],
                "--input-name", self.input_name, "--precision", self.precision,
                "--engine-cache", board.path("engines"), "--image", self.image,
                "--batch", str(self.device.batch_size), "--fixed-batch", str(self.fixed_batch),
                "--output-names", ",".join(self.output_names),
                "--tensorrt-version", str(board.facts.get("tensorrt") or "unknown"),
            )  # fmt: skip
        return self.session

    def ask(self, doing: str, header: dict[str, Any], array: np.ndarray) -> tuple[dict[str, Any], list[np.ndarray]]:
        try:
            return self.open().request(doing, header, array)
        except RemoteError as error:
            self.close()
            if not error.transient:
                raise
        time.sleep(self.runtime.board.connection.retry_pause_s)
        try:  # once more, in a new session: the connection may have dropped and come back
            return self.open().request(doing, header, array)
        except RemoteError as error:
            self.close()
            raise RemoteError(f"{error} (retried once: the connection had been lost while {doing})") from error

    def __call__(self, inputs: np.ndarray) -> np.ndarray | list[np.ndarray]:
        if not self.scored_on_board:
            if self.host is None:
                options = session_options(self.device.threads)
                self.host = OnnxRuntimePredictor(
                    ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
                )
            return self.host(inputs)
        _, outputs = self.ask(f"running {self.path.name} on the board", {"op": "run"}, inputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def time_passes(self, batches: list[Any], count: int, passes: int, desc: str = "latency") -> list[float]:
        """The passes run and timed on the board: the batches sent once, the per-pass timings read back."""
        images = np.concatenate(batches)
        header = {"op": "time", "batch": len(batches[0]), "passes": passes}
        answer, _ = self.ask(f"timing {self.path.name} on the board", header, images)
        return [float(ms) for ms in answer["passes_ms_per_image"]]

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def __del__(self) -> None:
        if hasattr(self, "session"):
            self.close()


class RemoteRuntime(Runtime):
    """`engine` on `board`. `remote_accuracy`: None scores INT8 files and TensorRT engines on the board and the rest
    on the host (module docstring); True or False scores every file on the board, or on the host."""

    runs_files = True

    def __init__(self, board: Board, engine: str = "onnxruntime", remote_accuracy: bool | None = None) -> None:
        if engine not in ENGINES:
            raise RemoteError(f"device.runtime must be one of {ENGINES}, got {engine!r}")
        self.board = board
        self.name = engine
        self.remote_accuracy = remote_accuracy

    def scores_on_board(self, precision: str) -> bool:
        if self.remote_accuracy is not None:
            return self.remote_accuracy
        return precision == "int8" or self.name == "tensorrt"

    def deploy(self, model: nn.Module, input_size: int, folder: Path) -> ExportedModel:
        """The host's FP32 ONNX export (OnnxRuntime.deploy), to be run on the board."""
        return replace(OnnxRuntime().deploy(model, input_size, folder), runtime=self)

    def load(self, artifact: str | os.PathLike, device) -> RemotePredictor:
        if not isinstance(artifact, (str, os.PathLike)):
            raise TypeError(f"a board runs ONNX files, got {type(artifact).__name__}")
        path = Path(artifact)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {path} does not exist (export it with export_onnx first)")
        return RemotePredictor(self, read_signature(path), device)

    def details(self, device, precision: str | None = None) -> dict[str, Any]:
        facts = self.board.facts
        details: dict[str, Any] = {
            "remote": self.board.address,
            "board_python": facts.get("python"),
            "accuracy_on": "board" if self.scores_on_board(precision or "fp32") else "host",
        }
        if self.name == "onnxruntime":
            details |= {"provider": PROVIDERS[device.accelerator], "onnxruntime_version": facts.get("onnxruntime")}
        else:
            # what the engine computes in: an INT8 file's Q/DQ make INT8 layers, the rest runs at the profile's
            engine = "int8" if precision == "int8" else device.precision
            details |= {"trtexec": facts.get("trtexec"), "tensorrt": facts.get("tensorrt"), "engine_precision": engine}
        return details
