"""FastNAS under a latency budget: every candidate subnet deployed and timed as edgecomp deploys and times a model.

ModelOpt's searcher takes `constraints={"latency": ms}` with a `deployment` (e.g. {"runtime": "ORT", "accelerator":
"CPU"}), but as shipped (modelopt.torch.nas.algorithms.ConstraintsFunc, ModelOpt 0.47) it measures only three subnets,
the smallest, the centroid and the largest, through its own deployment client, and interpolates every other subnet's
latency from its FLOPs (ConstraintInterpolator, `fast_eval`): a FLOPs search rescaled. Its ONNX Runtime client also
runs with ORT's default threads, random inputs and ORT's profiler on, not as edgecomp measures a deployment.

Here ModelOpt's own plug-in point (MODULE_TYPE_TO_CONSTRAINTS_FUNC: the constraints functor per module type) gets,
for the duration of one search (`measured_latency`), a functor whose `latency` is measured, never interpolated, for
every distinct subnet (`SubnetLatency`, cached by the subnet's config: the bisection revisits subnets): the active
subnet of a deep copy of the search space exported to a plain module (modelopt.torch.nas.export), deployed by the
target device's runtime (`Runtime.deploy`: on device=cpu an FP32 ONNX file run by ONNX Runtime with every graph
optimisation) and timed by the latency protocol (measure_latency) at the device's threads and batch size, on fixed
images. What the searcher compares with the budget is that median ms per image.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modelopt.torch.nas as mtn
import torch
import torch.nn as nn
from modelopt.torch.nas.algorithms import MODULE_TYPE_TO_CONSTRAINTS_FUNC, ConstraintsFunc
from modelopt.torch.nas.utils import get_subnet_config

from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.latency import LatencyProtocol, measure_latency
from edgecomp.models.modelopt_artifact import ModelOptView


class SubnetLatency:
    """Median ms per image of the subnet active in a FastNAS search space (a converted ModelOptView), deployed on
    `device` as a deployment of it would be and timed with `protocol` on `images` (N, 3, input_size, input_size) in
    batches of the device's batch size. Each distinct subnet is measured once: `measured` maps subnet configs to ms.
    """

    def __init__(self, device: TargetDevice, input_size: int, images: torch.Tensor, protocol: LatencyProtocol) -> None:
        self.device = device
        self.input_size = input_size
        self.images = images
        self.protocol = protocol
        self.measured: dict[str, float] = {}

    def __call__(self, view: nn.Module) -> float:
        key = json.dumps(get_subnet_config(view), sort_keys=True, default=str)
        if key not in self.measured:
            self.measured[key] = self.measure(view)
        return self.measured[key]

    def measure(self, view: nn.Module) -> float:
        """Time the active subnet of `view` (which stays the search space it is)."""
        subnet = copy.deepcopy(view)
        mtn.export(subnet)  # a plain module with the active subnet's channels, as the searched model is deployed
        runtime, device = self.device.runtime, self.device
        with tempfile.TemporaryDirectory() as folder:
            deployed = runtime.deploy(subnet.model, self.input_size, Path(folder))
            artifact = deployed.path if isinstance(deployed, ExportedModel) else deployed
            with device.pinned_threads():
                predictor = runtime.load(artifact, device)
                timed = measure_latency(predictor, self.images, device.batch_size, self.protocol, "fastnas latency")
            del predictor  # an idle ONNX Runtime session's threads would take the cores from the next one timed
        return timed["median"]

    def describe(self) -> dict[str, Any]:
        """How the search timed each subnet: the protocol, and the device settings it ran under."""
        return {
            "images": int(self.images.shape[0]),
            "runs": self.protocol.runs,
            "warmup": self.protocol.warmup,
            "batch_size": self.device.batch_size,
            "threads": self.device.threads,
            "runtime": self.device.runtime.name,
        }


def deployment_of(device: TargetDevice) -> dict[str, str]:
    """ModelOpt's `deployment` for a latency search (it must not be None when latency is a constraint): edgecomp's
    device, for the search's own records; the measurement itself is SubnetLatency's, not ModelOpt's client's."""
    return {
        "runtime": device.runtime.name,
        "accelerator": device.accelerator,
        "precision": device.precision,
        "batch_size": str(device.batch_size),
        "threads": str(device.threads),
    }


class MeasuredLatencyConstraints(ConstraintsFunc):
    """ModelOpt's constraints functor with `latency` measured by `measure` (a SubnetLatency) for every subnet it is
    asked about, instead of interpolated from FLOPs between three measured subnets."""

    def __init__(self, *args: Any, measure: SubnetLatency, **kwargs: Any) -> None:
        self.measure = measure  # set first: the base class may evaluate a constraint while it sets its limits
        super().__init__(*args, **kwargs)

    def _get_true_latency(self, _: dict[str, float] | None = None) -> float:
        return self.measure(self.model)

    def _get_latency(self, precomputed: dict[str, float] | None = None) -> float:
        return self._get_true_latency(precomputed)


@contextlib.contextmanager
def measured_latency(measure: SubnetLatency) -> Iterator[None]:
    """While open, ModelOpt's searchers constrain the latency of a ModelOptView with `measure`'s measurements
    (MeasuredLatencyConstraints); afterwards ModelOpt's process-wide table is as it was found."""
    found = dict(MODULE_TYPE_TO_CONSTRAINTS_FUNC)
    # First in the table: ModelOpt takes the first entry whose type the model is an instance of.
    MODULE_TYPE_TO_CONSTRAINTS_FUNC.clear()
    MODULE_TYPE_TO_CONSTRAINTS_FUNC[ModelOptView] = functools.partial(MeasuredLatencyConstraints, measure=measure)
    MODULE_TYPE_TO_CONSTRAINTS_FUNC.update({key: value for key, value in found.items() if key is not ModelOptView})
    try:
        yield
    finally:
        MODULE_TYPE_TO_CONSTRAINTS_FUNC.clear()
        MODULE_TYPE_TO_CONSTRAINTS_FUNC.update(found)
