"""Records built with known numbers (every field a real one has), for the tests of what reads them: the report's
table and intervals, a recipe's waterfall."""

from __future__ import annotations

from edgecomp.evaluate.record import REQUIRED_FIELDS

# The runtime of a record deployed by device=cpu: an FP32 ONNX file, and a quantized one
ORT_FP32 = {"accelerator": "cpu", "precision": "fp32", "batch_size": 1, "threads": 2, "runtime": "onnxruntime"}
ORT_INT8 = {**ORT_FP32, "precision": "int8"}

_clock = iter(range(10_000))


def make_record(
    model, compressor, seed, top1, latency, size, gzip, *, task="classification", metric="top1", settings=None, **extra
):
    """A record with every field a real one has (edgecomp.pipelines.measure.build_record); `settings`: the
    compressor's config besides its name."""
    record = {
        "task": task,
        "dataset": "synthetic_cls" if task == "classification" else "synthetic_sod",
        "model": model,
        "compressor": compressor,
        "device": "cpu",
        "hardware": "test CPU (2 logical CPUs)",
        "seed": seed,
        "runtime": ORT_FP32,
        "metrics": {metric: top1},
        "params": 1_500_000,
        "flops": 120_000_000,
        "input_size": [3, 64, 64],
        # The median is the statistic of every comparison; a mean well away from it shows where one is used instead
        "latency_ms": {"mean": 1.5 * latency, "std": 0.1, "median": latency, "p90": latency, "runs": 10, "warmup": 1},
        "size_bytes": size,
        "gzip_bytes": gzip,
        "artifact": f"results/runs/{model}-s{seed}/model.pt",
        "created": f"2025-01-01T00:00:{next(_clock):05d}",
        "edgecomp_version": "0.1.0",
        "config": {"seed": seed, "model": {"name": model}, "compressor": {"name": compressor, **(settings or {})}},
    }
    record.update(extra)
    assert set(REQUIRED_FIELDS) <= set(record)
    return record


def markdown_row(markdown, model, label):
    """{header: cell} of the Markdown table's line for (model, compressor label)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]

    def split(line):
        return [cell.strip() for cell in line.strip("|").split("|")]

    headers = split(lines[0])
    rows = [dict(zip(headers, split(line), strict=True)) for line in lines[2:]]
    (cells,) = [cells for cells in rows if (cells["model"], cells["compressor"]) == (model, label)]
    return cells


def recipe_stage_record(name: str, index: int, stage: dict, previous: dict, base: dict, seed: int = 0) -> dict:
    """A constructed record of stage `index` ("a", "b") of a two-stage recipe "r" (the report's waterfall tests)."""
    return {
        **stage,
        "task": "classification",
        "seed": seed,
        "model": "m",
        "dataset": "d",
        "device": "cpu",
        "compressor": name,
        "baseline": base,
        "previous": previous,
        "recipe": {"name": "r", "stage": name, "index": index, "stages": ["a", "b"]},
    }


# A sweep with known numbers: two models, two seeds, a baseline and three compressions of each (the report's
# tests check its table against them).
SMALL, B1 = "mobilenetv3_small_100", "efficientnet_b1"
# The baselines as train.py recorded them: (top1, latency ms, size bytes, gzip bytes) per model and seed.
TRAINED = {
    (SMALL, 0): (0.80, 10.0, 6_000_000, 5_500_000),
    (SMALL, 1): (0.84, 12.0, 6_000_000, 5_600_000),
    (B1, 0): (0.90, 40.0, 30_000_000, 27_000_000),
    (B1, 1): (0.92, 44.0, 30_000_000, 27_400_000),
}
# What each compressor does to (top1, latency, size, gzip) relative to the baseline it measured in its own run, and
# its compression time per seed.
COMPRESSIONS = {
    ("ptq_int8", None): (-0.10, 0.5, 0.25, 0.25, (2.0, 4.0)),
    ("prune_unstructured", 0.25): (-0.02, 1.0, 1.0, 0.6, (10.0, 12.0)),
    ("prune_unstructured", 0.5): (-0.06, 1.0, 1.0, 0.45, (11.0, 13.0)),
}
# compress.py measures the baseline again in its own run: its latency differs from train.py's by this much, so
# that a delta taken against the train.py row instead of the record's own baseline would show.
REMEASURED_LATENCY_MS = 1.0


def compressed_record(model, seed, compressor, sparsity):
    accuracy_delta, latency_factor, size_factor, gzip_factor, times = COMPRESSIONS[(compressor, sparsity)]
    top1, latency, size, gzip = TRAINED[(model, seed)]
    baseline_latency = latency + REMEASURED_LATENCY_MS
    compression = {"time_s": times[seed], "rss_added_peak_bytes": 900_000_000, "cuda_added_peak_bytes": None}
    if sparsity is None:
        settings = {"calib_images": 128, "format": "qdq", "calibrate_method": "minmax"}
    else:
        settings = {"sparsity": sparsity, "epochs": 1, "lr": 0.01}
        compression.update(settings, sparsity_reached=sparsity + 0.001)
    compression.update(settings)
    baseline = {
        "artifact": f"results/runs/{model}-s{seed}/checkpoints/last.ckpt",
        "metrics": {"top1": top1},
        "params": 1_500_000,
        "flops": 120_000_000,
        "latency_ms": {"mean": 1.5 * baseline_latency, "std": 0.1, "median": baseline_latency},
        "size_bytes": size,
        "gzip_bytes": gzip,
        "runtime": ORT_FP32,  # the baseline deployed as the compressed model is: an FP32 ONNX file
    }
    return make_record(
        model,
        compressor,
        seed,
        round(top1 + accuracy_delta, 6),
        baseline_latency * latency_factor,
        int(size * size_factor),
        int(gzip * gzip_factor),
        settings=settings,
        baseline=baseline,
        compression=compression,
        runtime=ORT_INT8 if compressor == "ptq_int8" else ORT_FP32,
    )


def sweep_records():
    records = [make_record(model, "none", seed, *numbers) for (model, seed), numbers in TRAINED.items()]
    for model, seed in TRAINED:
        for compressor, sparsity in COMPRESSIONS:
            records.append(compressed_record(model, seed, compressor, sparsity))
    return records
