"""Distillation compressors: Hinton KD for classifiers and the detection distillers (ScaleKD, FitNet, Chen et al.
2017), all on one teacher-distillation base; the losses themselves live in edgecomp.distill."""
