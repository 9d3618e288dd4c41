"""compress.py: apply one compressor to a trained model, evaluate baseline and result, record both."""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig

from edgecomp.compress.cost import measure_cost
from edgecomp.config import build
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.models.checkpoint import load_model
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record
from edgecomp.pipelines.train import WEIGHTS, trained_checkpoint
from edgecomp.report.comparison import comparison_table, vs_baseline

COMPARISON = "comparison.md"  # the baseline-vs-compressed table, next to the artifact

# What the record keeps of the baseline's own evaluation, under "baseline".
BASELINE_FIELDS = ("metrics", "params", "flops", "latency_ms", "size_bytes", "gzip_bytes", "runtime", "export_time_s")


def compress(job: Job) -> dict[str, Any]:
    cfg = job.cfg
    compressor = build(cfg.compressor)
    checkpoint = cfg.checkpoint or trained_checkpoint(job)
    baseline = load_model(job.new_model(), checkpoint)
    compressor.prepare(job)  # e.g. a distillation teacher: trained once and reused, so not part of the cost

    with measure_cost() as cost:
        compressed = compressor.compress(copy.deepcopy(baseline), job)
    # The weights the deployed artifact comes from: the compressed network's (saved here), a quantizer's own file,
    # or the baseline's checkpoint for a compressor that deploys the baseline.
    weights = compressed.path if isinstance(compressed, ExportedModel) else checkpoint
    if not compressor.deploys_baseline and not isinstance(compressed, ExportedModel):
        weights = compressor.save(compressed, job.artifacts_dir / WEIGHTS)

    # The baseline deployed the way the compressed model is (e.g. exported to FP32 ONNX for PTQ), so that sizes
    # and latencies compare like with like.
    deployed_baseline = compressor.deploy_baseline(baseline, job)
    base = job.measure(deployed_baseline)
    result = base if compressor.deploys_baseline else job.measure(compressed)
    record = build_record(job.config, job.device, result, weights)
    record["baseline"] = {
        "artifact": str(base["artifact"] or checkpoint),
        "checkpoint": str(checkpoint),
        **{k: base[k] for k in BASELINE_FIELDS},
    }
    record["compression"] = {**cost.as_record(), **compressor.settings()}
    record["vs_baseline"] = vs_baseline(record)  # params, FLOPs and latency ratios side by side
    extra = compressor.record_fields()
    if clashes := sorted(set(extra) & set(record)):
        raise RuntimeError(f"compressor={compressor.name}: record_fields() would replace the record's {clashes}")
    record.update(extra)
    published = job.publish(record, f"compress ({compressor.name})")
    table = comparison_table(record)
    job.artifacts_dir.mkdir(parents=True, exist_ok=True)
    (job.artifacts_dir / COMPARISON).write_text(table)
    print(f"\n{table}\n(written to {job.artifacts_dir / COMPARISON})", flush=True)
    return published


def run(cfg: DictConfig) -> dict[str, Any]:
    # What the compressor cannot work with (compressor=kd without a teacher) stops the run before any work.
    build(cfg.compressor).check(cfg)
    return run_job(cfg, compress)
