#!/usr/bin/env python3
"""A stand-in for TensorRT's `trtexec` on the test board (scripts/install_test_board.sh puts it on the PATH of
/opt/edgecomp-test-board/bin/python-with-trtexec): the flags edgecomp's board program passes, with trtexec's file
formats, the network run by ONNX Runtime instead of a TensorRT engine.

- `--onnx=F --saveEngine=E [--fp16] [--int8]`: "builds" the engine: E holds F's bytes after a header naming the flags.
- `--loadEngine=E --shapes=NAME:NxCxHxW --iterations=K --warmUp=0 --duration=0 --avgRuns=1 --exportTimes=T`: runs the
  network K times and writes T as trtexec does: a JSON list, one entry per inference, with `startInMs`, `endInMs`,
  `startComputeMs`, `endComputeMs`, `startOutMs`, `endOutMs`, `inMs`, `computeMs`, `outMs`, `latencyMs`, `endToEndMs`.
- `--loadEngine=E --loadInputs=NAME:FILE --shapes=... --exportOutput=O`: runs the raw float32 input of FILE and writes
  O as trtexec does: a JSON list of {"name", "dimensions": "1x10", "values": [...]} per output.

Every call is appended to ~/fake-trtexec.log (one line of its flags), so a test can count the engine builds.
"""

import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

HEADER = b"FAKE-TRT-ENGINE\n"


def main(argv):
    flags = {}
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        flags[key] = value
    with open(os.path.expanduser("~/fake-trtexec.log"), "a") as log:
        log.write(" ".join(argv) + "\n")
    if "onnx" in flags:
        with open(flags["onnx"], "rb") as source, open(flags["saveEngine"], "wb") as engine:
            engine.write(HEADER + json.dumps(sorted(k for k in ("fp16", "int8") if k in flags)).encode() + b"\n")
            engine.write(source.read())
        print("&&&& PASSED TensorRT.trtexec (stand-in) build")
        return 0
    with open(flags["loadEngine"], "rb") as engine:
        data = engine.read()
    if not data.startswith(HEADER):
        print("[E] Error: engine file is not an engine", file=sys.stderr)
        return 1
    model = data.split(b"\n", 2)[2]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    if "shapes" in flags:
        name, _, shape = flags["shapes"].partition(":")
        dims = [int(d) for d in shape.split("x")]
    else:  # a file with a fixed batch: its own shape (trtexec refuses --shapes for it)
        name, dims = session.get_inputs()[0].name, session.get_inputs()[0].shape
    if "exportOutput" in flags:
        _, _, path = flags["loadInputs"].partition(":")
        inputs = np.fromfile(path, dtype=np.float32).reshape(dims)
        outputs = session.run(None, {name: inputs})
        exported = [
            {"name": out.name, "dimensions": "x".join(str(d) for d in value.shape), "values": value.ravel().tolist()}
            for out, value in zip(session.get_outputs(), outputs, strict=True)
        ]
        with open(flags["exportOutput"], "w") as out:
            json.dump(exported, out)
    if "exportTimes" in flags:
        inputs = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        entries, origin = [], time.perf_counter()
        for _ in range(int(flags.get("iterations", 10))):
            start = (time.perf_counter() - origin) * 1000.0
            session.run(None, {name: inputs})
            end = (time.perf_counter() - origin) * 1000.0
            entries.append({
                "startInMs": start, "endInMs": start, "startComputeMs": start, "endComputeMs": end,
                "startOutMs": end, "endOutMs": end, "inMs": 0.0, "computeMs": end - start, "outMs": 0.0,
                "latencyMs": end - start, "endToEndMs": end - start,
            })  # fmt: skip
        with open(flags["exportTimes"], "w") as out:
            json.dump(entries, out)
    print("&&&& PASSED TensorRT.trtexec (stand-in)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
