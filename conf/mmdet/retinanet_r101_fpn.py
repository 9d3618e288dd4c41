# RetinaNet, ResNet-101 + FPN: mmdet's own config (ScaleKD's RetinaNet teacher). See retinanet_r50_fpn.py.
_base_ = ["mmdet::retinanet/retinanet_r101_fpn_1x_coco.py"]
