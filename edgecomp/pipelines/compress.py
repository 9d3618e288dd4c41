"""compress.py: apply one compressor to a trained model, evaluate baseline and result, record both."""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig

from edgecomp.compress.cost import measure_cost
from edgecomp.config import build
from edgecomp.models.checkpoint import load_weights
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record
from edgecomp.pipelines.train import trained_checkpoint

# What the record keeps of the baseline's own evaluation, under "baseline".
BASELINE_FIELDS = ("metrics", "params", "flops", "latency_ms", "size_bytes", "gzip_bytes")


def compress(job: Job) -> dict[str, Any]:
    cfg = job.cfg
    compressor = build(cfg.compressor)
    checkpoint = cfg.checkpoint or trained_checkpoint(job)
    baseline = load_weights(job.new_model(), checkpoint)

    with measure_cost() as cost:
        compressed = compressor.compress(copy.deepcopy(baseline), job)

    base = job.measure(baseline)
    result = base if compressor.deploys_baseline else job.measure(compressed)
    record = build_record(job.config, job.device, result, checkpoint)
    record["baseline"] = {"artifact": str(checkpoint), **{k: base[k] for k in BASELINE_FIELDS}}
    record["compression"] = {"time_s": cost.time_s, "peak_mem_bytes": cost.peak_mem_bytes, **compressor.settings()}
    return job.publish(record, f"compress ({compressor.name})")


def run(cfg: DictConfig) -> dict[str, Any]:
    return run_job(cfg, compress)
