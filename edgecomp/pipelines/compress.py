"""compress.py: apply one compressor to a trained model, evaluate baseline and result, record both."""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.compress.cost import measure_cost
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.record import RecordError
from edgecomp.lit import distributed
from edgecomp.lit.training import WEIGHTS
from edgecomp.models.checkpoint import load_model
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record, measured_side
from edgecomp.pipelines.recipe import check_recipe, run_recipe
from edgecomp.report.comparison import comparison_table, vs_baseline

COMPARISON = "comparison.md"  # the baseline-vs-compressed table, next to the artifact


def compression_context(job: Job) -> CompressionContext:
    """What the job's compressor is given (edgecomp.compress.context)."""
    datamodule, device, _, evaluator = job.measuring()
    return CompressionContext(
        task=job.cfg.task,
        model_config=job.cfg.model,
        teacher_config=job.cfg.get("teacher"),
        datamodule=datamodule,
        device=device,
        evaluator=evaluator,
        training=job.training,
        work_dir=job.artifacts_dir,
        deploy_dir=job.deploy_dir,
    )


def compress(job: Job, compressor: Compressor) -> dict[str, Any] | None:
    """`compressor` (built from the job's config, and checked) applied to the job's trained model."""
    cfg = job.cfg
    context = compression_context(job)
    checkpoint = cfg.checkpoint or context.training.trained_checkpoint()
    baseline = load_model(job.new_model(), checkpoint)
    # trainer=ddp: a compressor that trains does so in every rank; one that does not (PTQ) runs on rank 0 alone.
    # Either way the other ranks stop before anything is measured.
    if not compressor.trains and not distributed.release_workers():
        return None
    compressor.prepare(context)  # e.g. a distillation teacher: trained once and reused, so not part of the cost

    with measure_cost() as cost:
        compressed = compressor.compress(copy.deepcopy(baseline), context)
    if not distributed.release_workers():
        return None
    # The weights the deployed artifact comes from: the compressed network's (saved here), a quantizer's own file,
    # or the baseline's checkpoint for a compressor that deploys the baseline.
    weights = compressed.path if isinstance(compressed, ExportedModel) else checkpoint
    if not compressor.deploys_baseline and not isinstance(compressed, ExportedModel):
        weights = compressor.save(compressed, job.artifacts_dir / WEIGHTS)

    # The baseline deployed the way the compressed model is (e.g. exported to FP32 ONNX for PTQ), so that sizes
    # and latencies compare like with like.
    deployed_baseline = compressor.deploy_baseline(baseline, context)
    # Both sides' latencies are timed against each other in alternating rounds (a compressor that deploys the
    # baseline is timed against itself: the comparison then shows the protocol's own noise).
    deployed = deployed_baseline if compressor.deploys_baseline else compressed
    (base, result), timing = job.measure_compared([deployed_baseline, deployed])
    record = build_record(job.config, context.device, result, weights)
    record.baseline = measured_side(base, checkpoint)  # the baseline's own evaluation
    record.training = job.trained_summary()  # the baseline's training (the compressor's own epochs: `compression`)
    record.compression = {**cost.as_record(), **compressor.compression_fields()}
    # params, FLOPs and latency ratios side by side; the latency's from the paired rounds, with its interval
    record.vs_baseline = vs_baseline(record.to_json(), timing.ratio(1, 0))
    record.extra = compressor.record_fields()
    try:
        record.validate()
    except RecordError as err:
        raise RuntimeError(f"compressor={compressor.name}: its record_fields() or settings do not fit: {err}") from err
    published = job.publish(record, f"compress ({compressor.name})")
    table = comparison_table(published)
    job.artifacts_dir.mkdir(parents=True, exist_ok=True)
    (job.artifacts_dir / COMPARISON).write_text(table)
    print(f"\n{table}\n(written to {job.artifacts_dir / COMPARISON})", flush=True)
    return published


def run(cfg: DictConfig) -> dict[str, Any] | list[dict[str, Any]] | None:
    # What the compressor cannot work with (compressor=kd without a teacher), or a recipe's impossible chain, stops
    # the run before any work.
    if cfg.get("recipe") is not None:
        if cfg.compressor.name != "none":
            raise ConfigError(
                f"recipe={cfg.recipe.name} and compressor={cfg.compressor.name}: a recipe's stages are its compressors;"
                f" drop compressor= (or add it as a stage: +recipe.stages.NAME=...)"
            )
        stages = check_recipe(cfg)
        return run_job(cfg, lambda job: run_recipe(job, stages))
    compressor = build(cfg.compressor)  # its settings checked; built once, for the check and the work
    compressor.check(RunSpec.from_config(cfg))
    return run_job(cfg, lambda job: compress(job, compressor))
