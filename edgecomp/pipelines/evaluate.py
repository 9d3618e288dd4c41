"""evaluate.py: evaluate a saved checkpoint (or the model's pretrained_file as it loads), or an ONNX file from
anywhere, on the dataset and the target device, or score a detection results file against the dataset; record it.
With report=DIR: write the table and Pareto plot of DIR's records instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.coco_metrics import coco_metrics, load_predictions
from edgecomp.evaluate.onnx_outputs import check_input, check_logits, detection_decoder, read_signature
from edgecomp.evaluate.record import Record
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.models.checkpoint import load_model
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record, record_header


def evaluate(job: Job) -> dict[str, Any]:
    """The checkpoint (plain weights, or a pruned model's ModelOpt artifact) or, without one, the model as its
    pretrained_file loads (edgecomp.models.pretrained), measured on the device."""
    cfg = job.cfg
    if cfg.checkpoint is not None:
        model, weights = load_model(job.new_model(), cfg.checkpoint), cfg.checkpoint
    else:
        model, weights = job.new_model(), cfg.model.pretrained_file
    return job.publish(build_record(job.config, job.measuring().device, job.measure(model), weights), "evaluate")


def evaluate_artifact(job: Job) -> dict[str, Any]:
    """An ONNX file from anywhere, run by ONNX Runtime on the device (edgecomp.evaluate.onnx_outputs: what it must
    take and return). Its record's `artifact` is the file; params and FLOPs are null (no network to count) and
    `model` names the configured model where its head outputs are the file's, else the file."""
    path = Path(job.cfg.artifact)
    signature = read_signature(path)
    check_input(signature, job.measuring().datamodule.image_size)
    decoder, model_name = None, None
    if job.cfg.task == "detection":
        detector = job.new_model()
        if not isinstance(detector, DetectorAdapter):  # start_job refuses a classifier on a detection dataset
            raise ConfigError(f"model={job.cfg.model.name} is not a detector: it cannot decode a detection file")
        decoder, model_name = detection_decoder(signature, detector)
    else:
        check_logits(signature, job.cfg.dataset.num_classes)
    exported = ExportedModel(
        source=None, path=path, runtime=OnnxRuntime(), precision=signature.precision, decoder=decoder
    )
    record = build_record(
        job.config, job.measuring().device, job.measure(exported), None, model=model_name or path.name
    )
    return job.publish(record, "evaluate (ONNX file)")


def score_predictions(job: Job) -> dict[str, Any]:
    """COCO metrics of a results file against the dataset's evaluation split, by pycocotools; no model runs, so
    the record's model, device, latency and size fields are null."""
    cfg = job.cfg
    dataset = cfg.dataset
    if dataset.split not in dataset.splits:
        raise ConfigError(
            f"dataset.split={dataset.split} is not one of {list(dataset.splits)} (dataset={dataset.name})"
        )
    index = build(dataset.reader)(split=dataset.splits[dataset.split])
    detections = load_predictions(cfg.predictions, index)
    record = Record(
        **record_header(job.config),
        artifact=str(cfg.predictions),
        model=None,
        compressor=None,
        device=None,
        hardware=None,
        metrics=coco_metrics(index, detections, build(dataset.evaluator).size_scale),
        params=None,
        flops=None,
        latency_ms=None,
        size_bytes=None,
        gzip_bytes=None,
        extra={"images": len(index.images), "detections": len(detections)},
    )
    return job.publish(record, "evaluate (predictions)")


def run(cfg: DictConfig) -> Any:
    given = [key for key in ("checkpoint", "artifact", "predictions", "report") if cfg.get(key) is not None]
    if len(given) > 1:
        raise ConfigError(
            f"evaluate.py takes one of checkpoint=, artifact=, predictions= and report=; got {' and '.join(given)}"
        )
    if cfg.report is not None:
        from edgecomp.pipelines import report  # matplotlib is only needed here

        return report.run(cfg)
    if cfg.artifact is not None:
        return run_job(cfg, evaluate_artifact, trains=False)
    if cfg.predictions is not None:
        if cfg.task != "detection":
            raise ConfigError(
                f"predictions=FILE scores detections: it needs a detection dataset, not {cfg.dataset.name}"
            )
        return run_job(cfg, score_predictions, measures_a_model=False)
    if cfg.checkpoint is None and cfg.model.get("pretrained_file") is None:
        raise ConfigError(
            "evaluate.py needs checkpoint=PATH (a trained model to evaluate), model.pretrained_file=PATH (weights to "
            "evaluate as they load), artifact=FILE.onnx (an ONNX file to run) or predictions=FILE (a detection "
            "results file to score)"
        )
    return run_job(cfg, evaluate, trains=False)
