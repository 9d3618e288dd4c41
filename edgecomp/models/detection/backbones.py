"""Backbone + FPN for the torchvision detector families, from random init, trainable end to end.

Built with torchvision's own pieces (`resnet*`/`mobilenet_v2`, `_resnet_fpn_extractor`, `BackboneWithFPN`,
`LastLevelP6P7`, `LastLevelMaxPool`) so that the detectors are torchvision's detectors, with two deliberate changes
from torchvision's defaults, both because edgecomp trains from random init rather than fine-tuning ImageNet weights:

- BatchNorm is `nn.BatchNorm2d`, not `FrozenBatchNorm2d`: frozen statistics of a random network never become
  meaningful (torchvision itself switches to BatchNorm2d when no weights are given);
- no layer is frozen (torchvision freezes the first stages only to protect pretrained weights).

The returned module is a torchvision `BackboneWithFPN`: `.body` (an `IntermediateLayerGetter` whose LAST output is
the backbone's last stage, ResNet C5 / MobileNetV2's final 1x1 conv) and `.fpn`, so the adapters can run them
separately and keep the last stage for distillation, while the torchvision detector runs the very same modules.

The pyramid follows torchvision's builders for each family (`extra_levels`):

- "p6p7" (RetinaNet, FCOS): C3-C5 -> P3-P5, plus P6 and P7 computed from P5 (`LastLevelP6P7(256, 256)`, as
  torchvision's `retinanet_resnet50_fpn` and `fcos_resnet50_fpn`); strides 8, 16, 32, 64, 128;
- "maxpool" (Faster R-CNN): C2-C5 -> P2-P5, plus a stride-2 subsampling of P5 named "pool" (`LastLevelMaxPool`,
  torchvision's default); strides 4, 8, 16, 32, 64.

MobileNetV2 deviates from torchvision's `_mobilenet_extractor` on purpose: that helper taps the FIRST (strided) block
of a stage and by default only the last two stages, which are both at stride 32, so its pyramid has a different
number of levels and strides from the ResNet one. Here MobileNetV2 is tapped at the LAST block of each stage
(features[3], [6], [13], [18]: strides 4, 8, 16, 32), so every backbone gives the same levels at the same strides
and a distiller can pair a MobileNetV2 student's levels with a ResNet teacher's one to one.
"""

from __future__ import annotations

from typing import Literal

import torch.nn as nn
from torchvision.models import mobilenet_v2, resnet18, resnet34, resnet50, resnet101
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

ExtraLevels = Literal["p6p7", "maxpool"]

FPN_CHANNELS = 256  # torchvision's FPN width for every backbone

RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101}
BACKBONES = (*RESNETS, "mobilenet_v2")

# The stages (2 = C2 at stride 4 ... 5 = C5 at stride 32) each pyramid is built from, as torchvision's builders do:
# RetinaNet/FCOS skip C2 ("it generates too many anchors", RetinaNet paper), Faster R-CNN uses C2-C5.
FIRST_STAGE = {"p6p7": 3, "maxpool": 2}

# Output stride of each pyramid level, finest first.
PYRAMID_STRIDES = {"p6p7": (8, 16, 32, 64, 128), "maxpool": (4, 8, 16, 32, 64)}

# Names of the extra levels in the FPN's output dict (torchvision's); the others are "0", "1", ... finest first.
EXTRA_LEVEL_NAMES = {"p6p7": ("p6", "p7"), "maxpool": ("pool",)}

# Index in `mobilenet_v2().features` of the last block of each stage C2..C5 (the block before the next stride-2
# one; features[18] is the final 1x1 conv to 1280 channels, the network's last feature stage).
MOBILENET_V2_STAGE_ENDS = {2: 3, 3: 6, 4: 13, 5: 18}


def build_fpn_backbone(name: str, extra_levels: ExtraLevels) -> tuple[BackboneWithFPN, int]:
    """A randomly initialised `name` backbone with an FPN whose levels are those of `extra_levels` (see the module
    docstring). Returns the module and its pyramid width (the `out_channels` every level has)."""
    if extra_levels not in FIRST_STAGE:
        raise ValueError(f"extra_levels must be one of {sorted(FIRST_STAGE)}, got {extra_levels!r}")
    stages = range(FIRST_STAGE[extra_levels], 6)
    if name in RESNETS:
        network = RESNETS[name](weights=None, norm_layer=nn.BatchNorm2d)
        # trainable_layers=5: conv1, bn1 and layer1..4 all train; returned_layers counts layer1 = C2 as 1.
        backbone = _resnet_fpn_extractor(
            network,
            trainable_layers=5,
            returned_layers=[stage - 1 for stage in stages],
            extra_blocks=_extra_block(extra_levels),
        )
    elif name == "mobilenet_v2":
        features = mobilenet_v2(weights=None, norm_layer=nn.BatchNorm2d).features
        return_layers = {str(MOBILENET_V2_STAGE_ENDS[stage]): str(level) for level, stage in enumerate(stages)}
        in_channels = [features[MOBILENET_V2_STAGE_ENDS[stage]].out_channels for stage in stages]
        backbone = BackboneWithFPN(
            features, return_layers, in_channels, FPN_CHANNELS, extra_blocks=_extra_block(extra_levels)
        )
    else:
        raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {name!r}")
    return backbone, backbone.out_channels


def pyramid_level_names(backbone: BackboneWithFPN, extra_levels: ExtraLevels) -> list[str]:
    """The keys of the FPN's output dict, finest first: what torchvision's RoI pooling selects levels by."""
    return [*backbone.body.return_layers.values(), *EXTRA_LEVEL_NAMES[extra_levels]]


def pyramid_sizes(input_size: int, extra_levels: ExtraLevels) -> list[int]:
    """Side of each pyramid level for an S x S input (every stride-2 step rounds up, as the convolutions do)."""
    return [-(-input_size // stride) for stride in PYRAMID_STRIDES[extra_levels]]


def _extra_block(extra_levels: ExtraLevels) -> ExtraFPNBlock:
    if extra_levels == "p6p7":
        # P6 from P5 (in_channels == out_channels selects P5 in torchvision), as torchvision's v1 RetinaNet and FCOS.
        return LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS)
    return LastLevelMaxPool()
