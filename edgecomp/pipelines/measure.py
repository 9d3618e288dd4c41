"""Evaluate a model as deployed on a target device, and turn the measurement into a record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch.nn as nn

import edgecomp
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.evaluator import Evaluator
from edgecomp.evaluate.flops import count_flops, count_params
from edgecomp.evaluate.latency import LatencyProtocol, measure_latency
from edgecomp.evaluate.paired_latency import PairedTiming, Side, time_alternately
from edgecomp.evaluate.record import MEASURED_FIELDS, MeasuredSide, Measurement, Record
from edgecomp.evaluate.size import gzip_size, weights_bytes


def deployed_side(model: nn.Module | ExportedModel, input_size: int, device: TargetDevice, deploy_dir: Path) -> Side:
    """What a latency timing loads of `model` as deployed on `device` (see measure_model): its file and runtime, or
    the module run by the device's runtime."""
    if not isinstance(model, ExportedModel):
        model = device.runtime.deploy(model, input_size, deploy_dir)
    if isinstance(model, ExportedModel):
        runtime = device.file_runtime(model.runtime)
        return Side(runtime, model.path, f"{runtime.name} {model.precision}")
    return Side(device.runtime, model, device.runtime.name)


def time_deployed(
    models: Sequence[nn.Module | ExportedModel],
    datamodule,
    device: TargetDevice,
    protocol: LatencyProtocol,
    deploy_dir: Path,
) -> PairedTiming:
    """`models`, each deployed on `device` as measure_model deploys it, timed against each other in alternating
    rounds on the latency protocol's fixed images (edgecomp.evaluate.paired_latency)."""
    sides = [deployed_side(m, datamodule.image_size, device, deploy_dir) for m in models]
    return time_alternately(sides, datamodule.fixed_images(protocol.images), device, protocol)


def measure_compared(
    models: Sequence[nn.Module | ExportedModel],
    datamodule,
    device: TargetDevice,
    protocol: LatencyProtocol,
    evaluator: Evaluator,
    deploy_dir: Path,
) -> tuple[list[Measurement], PairedTiming]:
    """Each of `models` measured as measure_model does (a model given twice is evaluated once), but their latencies
    timed against each other (time_deployed): each one's `latency_ms` is its passes of the paired timing, and the
    timing itself is returned for the ratios (`PairedTiming.ratio`)."""
    evaluated: dict[int, Measurement] = {}
    for m in models:
        if id(m) not in evaluated:
            evaluated[id(m)] = measure_model(m, datamodule, device, protocol, evaluator, deploy_dir, latency=False)
    measured = [Measurement(**evaluated[id(m)]) for m in models]
    timing = time_deployed(models, datamodule, device, protocol, deploy_dir)
    for index, measurement in enumerate(measured):
        measurement["latency_ms"] = timing.latency(index)
    return measured, timing


def measure_model(
    model: nn.Module | ExportedModel,
    datamodule,
    device: TargetDevice,
    protocol: LatencyProtocol,
    evaluator: Evaluator,
    deploy_dir: Path,
    latency: bool = True,
) -> Measurement:
    """The task's metrics on the evaluation split (`evaluator`: top-1, COCO metrics) and latency through the
    runtime and precision that deploy the model; params, FLOPs per image at the evaluated input size; the
    deployed artifact's size and gzip size, and the artifact itself (`artifact`: its file, or None for a module run
    as it is). An nn.Module is deployed by the device's runtime (`Runtime.deploy`: eager PyTorch runs the module,
    its weights being what is deployed; ONNX Runtime runs an FP32 ONNX file exported into `deploy_dir`); an
    ExportedModel (a quantizer's file) by its own runtime. For a detector, FLOPs and latency are those of the
    deployable network (`forward`: backbone, neck and head; no box decoding or NMS). With `latency` off, `latency_ms`
    is left None for a paired timing to fill (measure_compared)."""
    size = datamodule.image_size
    if not isinstance(model, ExportedModel):
        model = device.runtime.deploy(model, size, deploy_dir)
    loaded: Path | nn.Module  # what the runtime loads: the file, or the module itself
    if isinstance(model, ExportedModel):
        runtime = device.file_runtime(model.runtime)
        network, scorer, artifact = model.source, model.scorer, model.file_bytes()
        description = {
            **device.describe(),
            "runtime": runtime.name,
            "precision": model.precision,
            **runtime.details(device, model.precision),
        }
        loaded, deployed_file, export_time_s = model.path, str(model.path), model.export_time_s
    else:
        network, scorer, artifact, runtime = model, model, weights_bytes(model), device.runtime
        description = {**device.describe(), **runtime.details(device)}
        loaded, deployed_file, export_time_s = model, None, None
    predictor = runtime.load(loaded, device)
    latency_ms = None
    with device.pinned_threads():
        metrics, metrics_ci95 = evaluator.evaluate(scorer, predictor, datamodule, device)
        if latency:
            images = datamodule.fixed_images(protocol.images)
            latency_ms = measure_latency(predictor, images, device.batch_size, protocol)
    return Measurement(
        artifact=deployed_file,
        export_time_s=export_time_s,
        # a file made elsewhere has no network to count (null)
        params=None if network is None else count_params(network),
        flops=None if network is None else count_flops(network, (1, 3, size, size)),
        input_size=[3, size, size],
        size_bytes=len(artifact),
        gzip_bytes=gzip_size(artifact),
        runtime=description,
        metrics=metrics,
        metrics_ci95=metrics_ci95,
        latency_ms=latency_ms,
    )


def measured_side(measurement: Measurement | dict[str, Any], checkpoint: str | Path) -> MeasuredSide:
    """The side of a comparison that `measurement` (measure_model's, or a record) measured: its deployed artifact
    (the checkpoint for a module run as it is), the weights it came from, and MEASURED_FIELDS."""
    side = {
        "artifact": str(measurement.get("artifact") or checkpoint),
        "checkpoint": str(checkpoint),
        **{key: measurement.get(key) for key in MEASURED_FIELDS},
    }
    # MEASURED_FIELDS are MeasuredSide's own keys, which a Measurement (or a record, checked when read) holds with
    # MeasuredSide's types.
    return cast(MeasuredSide, side)


def record_header(config: dict[str, Any]) -> dict[str, Any]:
    """The fields every record has, whatever was evaluated."""
    return {
        "task": config["task"],
        "dataset": config["dataset"]["name"],
        "seed": config["seed"],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "edgecomp_version": edgecomp.__version__,
        "config": config,
    }


def build_record(
    config: dict[str, Any],
    device: TargetDevice,
    measurement: Measurement,
    checkpoint: str | Path | None,
    model: str | None = None,
) -> Record:
    """The record of a model measured on a device (`measurement`: measure_model's): `artifact` is the deployed file
    (the checkpoint itself for a module run as it is), `checkpoint` the weights it came from (None for a file made
    elsewhere), `model` the configured model's name unless given."""
    # The measured fields go to the record as they are; the deployed file is the record's `artifact`.
    measured: dict[str, Any] = {key: value for key, value in measurement.items() if key != "artifact"}
    artifact = measurement.get("artifact") or checkpoint
    return Record(
        **record_header(config),
        artifact=str(artifact),
        checkpoint=None if checkpoint is None else str(checkpoint),
        model=model or config["model"]["name"],
        compressor=config["compressor"]["name"],
        device=config["device"]["name"],
        hardware=device.hardware,
        **measured,  # includes "runtime": what ran the measured artifact
    )
