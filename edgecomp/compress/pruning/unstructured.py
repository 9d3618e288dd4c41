"""`compressor=prune_unstructured`: magnitude pruning to a target sparsity, held through a short fine-tune.

The benchmark paper's unstructured pruning: the smallest-magnitude weights of the convolution and linear layers are
zeroed (torch.nn.utils.prune, L1 magnitude), the network is fine-tuned for a few epochs with the masks held, and the
masks are then made permanent. The zeros leave the parameter count, the FLOPs and the weights file's size as they
were (dense tensors store a zero like any other value); what they shrink is the gzip size, which the record reports
next to the sparsity actually reached.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn
from pydantic import Field
from torch.nn.utils import prune

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.settings import Settings

PRUNED_LAYERS = (nn.Conv2d, nn.Linear)

# A pruned tensor: the layer and the name of its parameter, as torch.nn.utils.prune addresses it.
PrunedWeight = tuple[nn.Module, str]


def prunable_weights(model: nn.Module) -> list[PrunedWeight]:
    """The weights pruning applies to: that of every Conv2d and Linear layer that trains (biases are left whole).

    A frozen weight is a fixed part of the architecture, not a learned one: YOLOv8's DFL projection, for one, holds
    the integers 0..15 that turn a predicted distribution into a box side. Zeroing it would corrupt the network, and
    no fine-tune could make up for it.
    """
    return [
        (layer, "weight")
        for layer in model.modules()
        if isinstance(layer, PRUNED_LAYERS) and layer.weight is not None and layer.weight.requires_grad
    ]


def apply_masks(weights: list[PrunedWeight], sparsity: float, scope: str) -> None:
    """Mask the smallest-magnitude fraction `sparsity` of the weights.

    `global`: one magnitude threshold over all the weights together (layers end up with different sparsities);
    `layer`: each layer pruned to `sparsity` on its own. torch keeps each dense weight as `weight_orig`, the mask as
    `weight_mask` and recomputes `weight = weight_orig * weight_mask` in a forward pre-hook, so training updates
    `weight_orig` while the masked weights stay zero in every forward pass.
    """
    if scope == "global":
        prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=sparsity)
    else:
        for layer, name in weights:
            prune.l1_unstructured(layer, name, amount=sparsity)


def make_permanent(weights: list[PrunedWeight]) -> None:
    """Fold each mask into its weight and drop the pruning state (`weight_orig`, `weight_mask`, the hook): the
    state_dict then holds plain `weight` tensors with zeros, the same keys and shapes as the baseline's."""
    for layer, name in weights:
        prune.remove(layer, name)


def zero_fraction(weights: list[PrunedWeight]) -> float:
    """Zero weights / all weights over exactly these tensors."""
    tensors = [getattr(layer, name).detach() for layer, name in weights]
    zeros = sum(int((tensor == 0).sum()) for tensor in tensors)
    return zeros / sum(tensor.numel() for tensor in tensors)


class UnstructuredPruningSettings(Settings):
    sparsity: float = Field(gt=0, lt=1, description="the fraction of weights to zero, 0 < sparsity < 1 (e.g. 0.5)")
    epochs: int = Field(5, ge=0, description="a whole number of fine-tuning epochs >= 0 (0: no fine-tune)")
    lr: float = Field(0.005, gt=0, description="the fine-tune's learning rate, lr > 0 (e.g. 0.005)")
    scope: Literal["global", "layer"] = Field(
        "global", description="global (one magnitude threshold over all layers) or layer (each layer to `sparsity`)"
    )


class UnstructuredPruning(Compressor):
    """Prune the Conv2d and Linear weights to `sparsity` by L1 magnitude, fine-tune `epochs` epochs at a constant
    `lr` with the masks held, then make the masks permanent.

    The fine-tune trains the task's own LightningModule (`dataset.module`: cross-entropy for a classifier, the
    family's detection loss for a detector) with the run's optimizer at `lr` and no schedule: restarting the
    training schedule's large learning rate would throw away what the baseline learned. `epochs=0` prunes without
    a fine-tune (one-shot pruning: what the fine-tune recovers is the difference).
    """

    settings_class = UnstructuredPruningSettings
    options: UnstructuredPruningSettings

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.sparsity_reached: float | None = None  # measured by compress()

    def check(self, spec: RunSpec) -> None:
        """The configured model (built with random weights: which layers it has is the architecture's) has weights
        to prune."""
        if not prunable_weights(build(spec.model)):
            raise ConfigError(
                f"compressor={self.name}: model={spec.model.name} has no trainable Conv2d or Linear weights to prune"
            )

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        options = self.options
        weights = prunable_weights(model)
        apply_masks(weights, options.sparsity, options.scope)
        if options.epochs > 0:
            # The masked model trained at the constant learning rate `lr`, the masks held (pruning's hooks).
            context.training.fine_tune(context.training.task_module(model, options.lr), options.epochs)
        make_permanent(weights)
        self.sparsity_reached = zero_fraction(weights)
        return model

    @property
    def trains(self) -> bool:
        return self.options.epochs > 0  # the fine-tune

    def results(self) -> dict[str, Any]:
        return {"sparsity_reached": self.sparsity_reached}
