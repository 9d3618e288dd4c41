# RetinaNet, ResNet-50 + FPN (P3-P7), focal loss: mmdet's own config (ScaleKD's RetinaNet student), as edgecomp
# builds it: num_classes, the test-time score threshold and detection count come from edgecomp's model config, and
# the backbone starts from random weights (nothing is downloaded). Everything else is mmdet's.
_base_ = ["mmdet::retinanet/retinanet_r50_fpn_1x_coco.py"]
