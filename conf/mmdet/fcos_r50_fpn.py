# FCOS, ResNet-50 + FPN (caffe-style ResNet, GN head): mmdet's own config. See retinanet_r50_fpn.py.
_base_ = ["mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py"]
