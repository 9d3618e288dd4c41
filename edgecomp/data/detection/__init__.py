"""Detection datasets: each on-disk format (COCO json, YOLO/COCO128, VisDrone, generated) is read into one
DetectionIndex in COCO's terms, which the training data pipeline and the COCO metrics both use."""

from edgecomp.data.detection.coco_json import read_coco
from edgecomp.data.detection.dataset import DetectionDataset, collate
from edgecomp.data.detection.index import DetectionIndex
from edgecomp.data.detection.synthetic_sod import SyntheticDetection
from edgecomp.data.detection.visdrone import read_visdrone, split_into_patches
from edgecomp.data.detection.yolo import read_yolo

__all__ = [
    "DetectionDataset",
    "DetectionIndex",
    "SyntheticDetection",
    "collate",
    "read_coco",
    "read_visdrone",
    "read_yolo",
    "split_into_patches",
]
