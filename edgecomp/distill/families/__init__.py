"""The distillation view of each detector family (see family_view.py), looked up by the adapter's class.

A new family distils once it has a `FamilyView` here: one file, one entry in `VIEWS`.
"""

from __future__ import annotations

from edgecomp.distill.families.family_view import DetectionStep, FamilyView, Stage, StageTargets
from edgecomp.distill.families.faster_rcnn_view import FasterRCNNView
from edgecomp.distill.families.mmdet_anchor_view import MMDetAnchorView
from edgecomp.distill.families.torchvision_dense_view import FCOSView, RetinaNetView
from edgecomp.distill.families.yolov8_view import YOLOv8View
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.detection.mmdet import MMDetAdapter
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter
from edgecomp.models.detection.yolov8 import YOLOv8Adapter

VIEWS: dict[type[DetectorAdapter], type[FamilyView]] = {
    RetinaNetAdapter: RetinaNetView,
    FCOSAdapter: FCOSView,
    FasterRCNNAdapter: FasterRCNNView,
    YOLOv8Adapter: YOLOv8View,
    MMDetAdapter: MMDetAnchorView,  # mmdet's anchor heads (RetinaNet); `refusal` names the others
}

__all__ = ["VIEWS", "DetectionStep", "FamilyView", "Stage", "StageTargets", "family_view", "view_class"]


def view_class(adapter_class: type) -> type[FamilyView] | None:
    """The view of `adapter_class` or of the nearest of its bases that has one; None for a family without one."""
    for base in adapter_class.__mro__:
        if base in VIEWS:
            return VIEWS[base]
    return None


def family_view(adapter: DetectorAdapter) -> FamilyView:
    view = view_class(type(adapter))
    if view is None:
        raise TypeError(
            f"{type(adapter).__name__} has no distillation view (edgecomp.distill.families); distillable families: "
            f"{', '.join(cls.__name__ for cls in VIEWS)}"
        )
    return view(adapter)
