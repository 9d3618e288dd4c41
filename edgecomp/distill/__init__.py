"""Detection distillation: ScaleKD (Zhu et al., CVPR 2023) and the baselines it is compared with (FitNet, Chen et al.
2017 output distillation), as modules that plug into edgecomp.lit.detection_distillation_module.

- families/: what distillation needs from each detector family beyond DetectorAdapter (the family's loss on given
  head outputs, its ground-truth assignment, its box space);
- alignment.py: the teacher's input scale and the pairing of teacher and student pyramid levels by stride;
- high_resolution.py: the teacher trained and run on the images upsampled by that scale;
- sdf.py: ScaleKD's scale-decoupled feature distillation (section 3.1, Fig. 2);
- csa.py: ScaleKD's cross-scale assistant (section 3.2, eqs. 3-6, Fig. 3);
- output_losses.py: Chen et al. 2017's soft-label classification and teacher-bounded regression losses;
- scalekd_distiller.py, fitnet_distiller.py, od2017_distiller.py: the three distillers (what each adds to the student's loss).
"""
