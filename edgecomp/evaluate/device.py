"""The target device: where latency is measured, with which runtime, precision, batch size and threads, and the
channel granularity its runtime runs best (`channel_divisor`, the default of FastNAS's search space).

A profile for an edge board (`profile_of`: "Jetson Nano") runs as specified on that board. On any other
machine it is emulated on what is there (the GPU if there is one, else the CPU, at FP32 since FP16 on a CPU is
not what a Jetson does and runs ~40x slower) and `hardware` says so: a record never claims a board it did not
run on. A plain `cuda` target on a machine without a CUDA GPU is an error, not a silent CPU run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from edgecomp.errors import DeviceError
from edgecomp.evaluate import hardware

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
ACCELERATORS = ("cpu", "cuda")
# A profile that names no channel granularity: ModelOpt's own default for FastNAS's search space.
DEFAULT_CHANNEL_DIVISOR = 32


def check_profile(accelerator: str, precision: str, batch_size: int, threads, channel_divisor) -> None:
    """A DeviceError naming the key for a profile value out of its range (the keys every device has)."""
    if accelerator not in ACCELERATORS:
        raise DeviceError(f"device.accelerator must be one of {ACCELERATORS}, got {accelerator!r}")
    if precision not in PRECISIONS:
        raise DeviceError(f"device.precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if batch_size < 1:
        raise DeviceError(f"device.batch_size must be >= 1, got {batch_size}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise DeviceError(
            f"device.threads must be a whole number >= 1 or null (all cores), got {threads!r} (on device=cpu "
            f"and device=cpu_torch, EDGECOMP_THREADS sets it when device.threads= does not)"
        )
    if isinstance(channel_divisor, bool) or not isinstance(channel_divisor, int) or channel_divisor < 1:
        raise DeviceError(
            f"device.channel_divisor must be a whole number >= 1 (the channel count multiple its runtime runs "
            f"best, e.g. 16), got {channel_divisor!r}"
        )


class TargetDevice:
    def __init__(
        self,
        name: str,
        accelerator: str,
        runtime,
        precision: str = "fp32",
        batch_size: int = 1,
        threads: int | None = None,
        profile_of: str | None = None,
        channel_divisor: int = DEFAULT_CHANNEL_DIVISOR,
    ) -> None:
        check_profile(accelerator, precision, batch_size, threads, channel_divisor)
        self.name = name
        self.runtime = runtime
        self.batch_size = batch_size
        self.threads = threads
        self.profile_of = profile_of
        # Channel counts that are multiples of it run best on this runtime (e.g. ONNX Runtime's NCHWc blocks of 16
        # floats on AVX-512): what FastNAS rounds pruned channel counts to unless compressor.channel_divisor says.
        self.channel_divisor = channel_divisor
        self.requested = {"accelerator": accelerator, "precision": precision}

        cuda = torch.cuda.is_available()
        board = hardware.board_model()
        self.on_target = profile_of is None or (board is not None and profile_of.lower() in board.lower())
        if self.on_target:
            if accelerator == "cuda" and not cuda:
                raise DeviceError(
                    f"device={name} needs a CUDA GPU, but torch.cuda.is_available() is False on this machine "
                    f"(torch {torch.__version__}). Use device=cpu, or run on a machine with a GPU."
                )
            self.accelerator, self.precision = accelerator, precision
        else:
            # Emulating a board we are not on: measure on what is here, at a precision that hardware runs well.
            self.accelerator = "cuda" if accelerator == "cuda" and cuda else "cpu"
            self.precision = precision if self.accelerator == "cuda" else "fp32"
        if self.accelerator == "cpu" and self.precision == "fp16":
            raise DeviceError(
                f"device={name}: precision=fp16 on the CPU is not a deployment setting (FP16 convolutions run "
                "~40x slower than FP32 there); use fp32, or accelerator=cuda"
            )

    def check(self) -> None:  # noqa: B027 - a concrete default: a local device was checked when it was built
        """Raise a DeviceError for a device that cannot be used now, before any work (a board out of reach)."""

    def file_runtime(self, made_for):
        """What runs a deployed file on this device: its own runtime where that runs files (ONNX Runtime on this CPU,
        a board's runtime over SSH), else the runtime the file was made for (a quantizer's ONNX file on
        device=cpu_torch: ONNX Runtime on this CPU)."""
        return self.runtime if self.runtime.runs_files else made_for

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cuda:0" if self.accelerator == "cuda" else "cpu")

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    @property
    def hardware(self) -> str:
        """What the measurement ran on, and, for an emulated profile, that it is not the board."""
        measured = hardware.gpu_name() if self.accelerator == "cuda" else hardware.cpu_description()
        if self.on_target:
            board = hardware.board_model()
            return f"{board} ({measured})" if self.profile_of and board else measured
        return f"{measured} (emulating the {self.name} profile: not a {self.profile_of}, latency is not the board's)"

    def describe(self) -> dict:
        return {
            "accelerator": self.accelerator,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "runtime": self.runtime.name,
            "emulated": not self.on_target,
        }

    @contextmanager
    def pinned_threads(self) -> Iterator[None]:
        """Fix torch's intra-op thread count for the duration (restored afterwards)."""
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
