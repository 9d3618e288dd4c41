"""The program edgecomp runs on a board over SSH: standard library, numpy and the board's runtime, nothing of edgecomp.

edgecomp.evaluate.remote copies this one file to the board (`device.workdir`, named by its content hash, so a changed
program is copied again) and runs it with the board's interpreter (`device.python`):

    python edgecomp_board.py probe
        One JSON line: the interpreter, numpy and ONNX Runtime versions (or why ONNX Runtime does not import), its
        providers, `trtexec` if on the PATH, and what the board is (CPU model, logical CPUs, 8-bit dot-product
        instructions, memory, the device-tree model and /etc/nv_tegra_release where present).

    python edgecomp_board.py serve --artifact FILE --engine onnxruntime|tensorrt [--threads N] [--provider P]
                                   [--input-name NAME] [--precision fp32|fp16|int8] [--engine-cache DIR]
                                   [--image CxHxW] [--batch B]
        Loads the file once, then answers requests on stdin until it closes. A message (request or answer) is one
        JSON line naming its arrays' dtypes and shapes, then their bytes (write_message); an answer is {"ok": true,
        ...} or {"ok": false, "error": "..."}:
          {"op": "run"} + a batch              -> {"ok": true} + the outputs of the network
          {"op": "time", "batch": B, "passes": P} + N images
                                               -> {"ok": true, "passes_ms_per_image": [P values]}: edgecomp's latency
                                                  protocol on the board's clock (each pass runs the N images in batches
                                                  of B; its time over N, in ms; warm-up passes are the host's to drop)

With `--engine tensorrt` the file is built into a TensorRT engine by the board's `trtexec` at the precision asked
(cached by the file's content and the precision in `--engine-cache`, written under a temporary name and renamed, so a
build cut short is never reused), timed by trtexec (`--exportTimes`: one entry per inference, its `latencyMs` = input
copy + compute + output copy) and run by trtexec (`--loadInputs`, `--exportOutput`).

It runs on Python 3.6 and later (JetPack 4.6, the Jetson Nano's last, ships 3.6): no `from __future__ import
annotations`, no `X | None`, no `zip(strict=)`, no `subprocess.run(capture_output=)`.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
SERVE_MARKER = b"EDGECOMP-BOARD-SERVE"  # the first line `serve` writes: the protocol starts after it  # where JetPack puts it, off the PATH
# What the board's CPU has for 8-bit dot products, best first (as /proc/cpuinfo's flags or Features name them).
INT8_FLAGS = (
    ("amx_int8", "AMX"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("asimddp", "Arm dot product"),
    ("avx2", "AVX2"),
    ("asimd", "Arm NEON"),
)


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None
    except OSError:
        return None


def probe() -> Dict[str, Any]:
    """What the board has (see the module docstring)."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    cpu, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if cpu is None and key in ("model name", "hardware", "cpu model"):
            cpu = value.strip()
        if key in ("flags", "features"):
            flags.update(value.split())
    memory, tegra = None, _read("/etc/nv_tegra_release")
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    info = {  # type: Dict[str, Any]
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu or platform.processor() or platform.machine(),
        "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "int8_instructions": next((name for flag, name in INT8_FLAGS if flag in flags), None),
        "memory_bytes": memory,
        "board": _read("/proc/device-tree/model"),
        "tegra_release": tegra.splitlines()[0][:120] if tegra else None,
        "trtexec": shutil.which("trtexec") or (JETSON_TRTEXEC if os.access(JETSON_TRTEXEC, os.X_OK) else None),
    }
    if info["trtexec"]:
        info["tensorrt"] = trtexec_version(info["trtexec"])
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except Exception as error:  # noqa: BLE001 - any failure to import is what the host must be told
        info["numpy"], info["numpy_error"] = None, f"{type(error).__name__}: {error}"
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["providers"] = onnxruntime.get_available_providers()
    except Exception as error:  # noqa: BLE001
        info["onnxruntime"], info["onnxruntime_error"] = None, f"{type(error).__name__}: {error}"
    return info


def trtexec_version(trtexec: str) -> Optional[str]:
    """TensorRT's version as trtexec prints it on start (`[TensorRT v8201]`: "v8201", for 8.2.1), or None."""
    try:
        done = subprocess.run([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(rb"TensorRT (v\d+)", done.stdout)
    return found.group(1).decode() if found else None


class OrtEngine:
    """The file in an ONNX Runtime session: the host's session settings (edgecomp.evaluate.runtimes.onnxruntime)."""

    def __init__(self, artifact: str, threads: int, provider: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(artifact, options, providers=[provider])
        self.input_name = self.session.get_inputs()[0].name
        # A file exported for one image at a time (Ultralytics' default export) takes batches image by image.
        self.one_image_at_a_time = self.session.get_inputs()[0].shape[0] == 1

    def run(self, batch):
        import numpy as np

        if self.one_image_at_a_time and len(batch) != 1:
            parts = [self.session.run(None, {self.input_name: batch[i : i + 1]}) for i in range(len(batch))]
            return [np.concatenate(outputs) for outputs in zip(*parts)]  # noqa: B905 - Python 3.6
        return self.session.run(None, {self.input_name: batch})

    def time(self, images, batch: int, passes: int) -> List[float]:
        """Each pass runs the images in batches, timed as a whole on this board's clock: ms per image."""
        batches = [images[i : i + batch] for i in range(0, len(images), batch)]
        timed = []
        for _ in range(passes):
            start = time.perf_counter()
            for chunk in batches:
                self.run(chunk)
            timed.append((time.perf_counter() - start) * 1000.0 / len(images))
        return timed


class TrtexecEngine:
    """The file built into a TensorRT engine by the board's trtexec, run and timed by trtexec.

    A file exported with a dynamic batch gets an engine for batches of 1 to MAX_BATCH images (trtexec's optimisation
    profile), tuned for the profile's batch size (what is timed); a larger evaluation batch is run in parts. A file
    with a fixed batch (trtexec refuses shapes for it) runs in parts of that batch. Outputs come back in the order
    of `output_names` (the ONNX file's), matched by name: trtexec's export does not keep an order."""

    MAX_BATCH = 32

    def __init__(
        self, artifact: str, precision: str, input_name: str, output_names: List[str], cache: str, image: str,
        batch: int, fixed_batch: int, version: str,
    ) -> None:  # fmt: skip
        self.trtexec = probe()["trtexec"]
        if self.trtexec is None:
            raise RuntimeError("trtexec is not on the board's PATH (nor in /usr/src/tensorrt/bin): install TensorRT")
        self.input_name, self.output_names = input_name, output_names
        self.fixed_batch = fixed_batch  # 0: the file's batch is dynamic
        flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]
        shapes = [] if fixed_batch else [
            "--{}Shapes={}:{}x{}".format(which, input_name, size, image)
            for which, size in (("min", 1), ("opt", batch), ("max", max(batch, self.MAX_BATCH)))
        ]  # fmt: skip
        Path(cache).mkdir(parents=True, exist_ok=True)
        # per file, precision, profile and TensorRT version: an engine runs only on the version that built it
        name = f"{Path(artifact).stem}-{precision}-{image}-b{fixed_batch or batch}-trt{version}.engine"
        self.engine = str(Path(cache) / name)
        if not os.path.isfile(self.engine):
            partial = f"{self.engine}.part{os.getpid()}"
            try:
                self._trtexec(f"--onnx={artifact}", f"--saveEngine={partial}", *(flags + shapes))
                os.replace(partial, self.engine)
            finally:
                if os.path.exists(partial):
                    os.remove(partial)

    def _trtexec(self, *args: str) -> None:
        done = subprocess.run(
            [self.trtexec] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
        )
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise RuntimeError(f"trtexec {' '.join(args)} failed ({done.returncode}): {tail}")

    def _shape(self, batch) -> List[str]:
        return [] if self.fixed_batch else [f"--shapes={self.input_name}:{'x'.join(str(d) for d in batch.shape)}"]

    def run(self, batch):
        import numpy as np

        part = self.fixed_batch or self.MAX_BATCH
        if len(batch) > part:
            parts = [self.run(batch[i : i + part]) for i in range(0, len(batch), part)]
            return [np.concatenate(outputs) for outputs in zip(*parts)]  # noqa: B905 - Python 3.6
        with tempfile.TemporaryDirectory() as scratch:
            inputs, outputs = os.path.join(scratch, "input.bin"), os.path.join(scratch, "output.json")
            np.ascontiguousarray(batch, dtype=np.float32).tofile(inputs)
            self._trtexec(
                f"--loadEngine={self.engine}", f"--loadInputs={self.input_name}:{inputs}", *self._shape(batch),
                "--iterations=1", "--warmUp=0", "--duration=0", f"--exportOutput={outputs}",
            )  # fmt: skip
            exported = {entry["name"]: entry for entry in json.loads(Path(outputs).read_text())}
        return [
            np.asarray(exported[name]["values"], dtype=np.float32).reshape(
                [int(d) for d in exported[name]["dimensions"].split("x")]
            )
            for name in self.output_names
        ]

    def time(self, images, batch: int, passes: int) -> List[float]:
        """trtexec runs the engine `passes` x (inferences per pass) times back to back (`--exportTimes`: each
        inference's start and end on the board's clock); a pass lasts from its first inference's input copy to its last
        one's output copy, over its images: ms per image, as a pass on ONNX Runtime."""
        per_pass = -(-len(images) // batch)  # inferences per pass over the images
        with tempfile.TemporaryDirectory() as scratch:
            times = os.path.join(scratch, "times.json")
            self._trtexec(
                f"--loadEngine={self.engine}", *self._shape(images[:batch]), f"--iterations={passes * per_pass}",
                "--warmUp=0", "--duration=0", "--avgRuns=1", f"--exportTimes={times}",
            )  # fmt: skip
            entries = json.loads(Path(times).read_text())
        if len(entries) < passes * per_pass:
            raise RuntimeError(f"trtexec timed {len(entries)} inferences, {passes * per_pass} were asked for")
        spans = []
        for p in range(passes):
            first, last = entries[p * per_pass], entries[(p + 1) * per_pass - 1]
            spans.append((float(last["endOutMs"]) - float(first["startInMs"])) / len(images))
        return spans


def write_message(out, header: Dict[str, Any], arrays=()) -> None:
    """One message: its header as a JSON line (with each array's dtype and shape under "arrays"), then the arrays'
    bytes in C order. Raw bytes rather than .npy: numpy reads .npy from a real file only (not from a pipe)."""
    import numpy as np

    arrays = [np.ascontiguousarray(array) for array in arrays]
    header = dict(header, arrays=[[array.dtype.str, list(array.shape)] for array in arrays])
    out.write((json.dumps(header) + "\n").encode())
    for array in arrays:
        out.write(array.tobytes())
    out.flush()


def read_exactly(stream, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the stream ended mid-message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream):
    """(header, arrays) of the next message (write_message's), or (None, []) at the end of the stream."""
    import numpy as np

    line = stream.readline()
    if not line:
        return None, []
    header = json.loads(line)
    arrays = []
    for dtype, shape in header.get("arrays", []):
        count = 1
        for dim in shape:
            count *= int(dim)
        data = read_exactly(stream, count * np.dtype(dtype).itemsize)
        arrays.append(np.frombuffer(bytearray(data), dtype=dtype).reshape(shape))  # writable: not the bytes' own
    return header, arrays


class timing_lock:  # noqa: N801 - a context manager, named as one is used
    """This board's timings one at a time (an exclusive lock on a file in the working folder)."""

    def __enter__(self):
        import fcntl

        self.file = open(".edgecomp-timing.lock", "a")  # noqa: SIM115 - closed by __exit__
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        self.file.close()  # releases the lock


def serve(args: argparse.Namespace) -> int:
    import numpy as np

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Whatever the login's shell printed before this line (a profile's greeting) is not the protocol: the host skips
    # to the marker.
    stdout.write(SERVE_MARKER + b"\n")
    try:
        engine = (
            TrtexecEngine(
                args.artifact,
                args.precision,
                args.input_name,
                args.output_names.split(","),
                args.engine_cache,
                args.image,
                args.batch,
                args.fixed_batch,
                args.tensorrt_version,
            )
            if args.engine == "tensorrt"
            else OrtEngine(args.artifact, args.threads, args.provider)
        )
    except Exception as error:  # noqa: BLE001 - told to the host, which stops the run with it
        write_message(stdout, {"ok": False, "error": f"cannot load {args.artifact}: {type(error).__name__}: {error}"})
        return 1
    write_message(stdout, {"ok": True, "loaded": args.artifact})
    while True:
        request, arrays = read_message(stdin)
        if request is None:
            return 0
        images = arrays[0]
        try:
            if request["op"] == "run":
                outputs = [np.asarray(output) for output in engine.run(images)]
                write_message(stdout, {"ok": True}, outputs)
            elif request["op"] == "time":
                with timing_lock():  # two runs timing on one board at once would slow each other
                    passes = engine.time(images, int(request["batch"]), int(request["passes"]))
                write_message(stdout, {"ok": True, "passes_ms_per_image": passes})
            else:
                write_message(stdout, {"ok": False, "error": "unknown request {!r}".format(request["op"])})
        except Exception as error:  # noqa: BLE001
            write_message(stdout, {"ok": False, "error": f"{request.get('op')}: {type(error).__name__}: {error}"})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.required = True  # add_subparsers(required=) is 3.7+
    commands.add_parser("probe", help="what the board has, as one JSON line")
    served = commands.add_parser("serve", help="load a file and answer run/time requests on stdin")
    served.add_argument("--artifact", required=True)
    served.add_argument("--engine", choices=("onnxruntime", "tensorrt"), default="onnxruntime")
    served.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    served.add_argument("--provider", default="CPUExecutionProvider")
    served.add_argument("--input-name", default="images")
    served.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    served.add_argument("--engine-cache", default="engines")
    served.add_argument("--image", default="3x224x224", help="one image's shape, CxHxW (TensorRT's profile)")
    served.add_argument("--batch", type=int, default=1, help="the batch size timed (TensorRT's profile)")
    served.add_argument("--fixed-batch", type=int, default=0, help="the file's fixed batch size (0: dynamic)")
    served.add_argument("--output-names", default="", help="the file's outputs, comma-separated, in order")
    served.add_argument("--tensorrt-version", default="unknown", help="trtexec's, for the engine cache's key")
    args = parser.parse_args(argv)
    if args.command == "probe":
        print(json.dumps(probe()), flush=True)
        return 0
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
