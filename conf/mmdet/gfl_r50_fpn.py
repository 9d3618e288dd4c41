# GFL (generalized focal loss, distribution focal loss), ResNet-50 + FPN: mmdet's own config. See retinanet_r50_fpn.py.
_base_ = ["mmdet::gfl/gfl_r50_fpn_1x_coco.py"]
