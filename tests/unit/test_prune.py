"""compressor=prune_unstructured: the sparsity reached, where the zeros are, what they do to the file and gzip sizes,
the settings refused (tests/integration/test_prune_fine_tune.py: the masks held through the fine-tune, and the
compress.py run that records it)."""

import copy

import pytest
import torch
import torch.nn as nn

from edgecomp.compress.pruning.unstructured import (
    UnstructuredPruning,
    apply_masks,
    make_permanent,
    prunable_weights,
    zero_fraction,
)
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.size import gzip_size, weights_bytes
from tests.conftest import compose_config

SPARSITIES = (0.25, 0.5, 0.75)


def small_net() -> nn.Sequential:
    """~26 k weights in two convolutions and a linear layer: big enough for gzip to see the zeros, fast to prune."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 100),
    )


def prune_only(model: nn.Module, sparsity: float, scope: str = "global") -> UnstructuredPruning:
    """Prune `model` in place without a fine-tune (epochs=0 needs no job); the compressor, for its settings."""
    compressor = UnstructuredPruning("prune_unstructured", sparsity=sparsity, epochs=0, scope=scope)
    assert compressor.compress(model, context=None) is model
    return compressor


def layer_sparsity(layer: nn.Module) -> float:
    return float((layer.weight == 0).float().mean())


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruning_reaches_the_target_and_leaves_plain_weights(sparsity, scope):
    model = small_net()
    baseline = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    compressor = prune_only(model, sparsity, scope)
    settings = {**compressor.settings(), **compressor.results()}
    assert settings == {
        "sparsity": sparsity,
        "sparsity_reached": pytest.approx(sparsity, abs=0.01),
        "epochs": 0,
        "lr": 0.005,
        "scope": scope,
    }
    # The masks are folded in: the same keys as the baseline, no weight_orig / weight_mask left behind.
    state = model.state_dict()
    assert set(state) == set(baseline)
    assert not [key for key in state if key.endswith(("_orig", "_mask"))]
    assert not any(isinstance(getattr(layer, "weight_mask", None), torch.Tensor) for layer in model.modules())
    if scope == "layer":  # every layer on its own reaches the target
        for layer, _ in prunable_weights(model):
            assert layer_sparsity(layer) == pytest.approx(sparsity, abs=0.01)
    # Biases and BatchNorm are not pruned: every tensor but the three weights is the baseline's, untouched.
    for key in set(baseline) - {"0.weight", "3.weight", "7.weight"}:
        assert torch.equal(state[key], baseline[key]), key


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_the_zeros_are_exactly_where_the_mask_was(sparsity):
    model = small_net()
    original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    weights = prunable_weights(model)
    apply_masks(weights, sparsity, "global")
    masks = [layer.weight_mask.clone() for layer, _ in weights]
    assert sum(int((mask == 0).sum()) for mask in masks) / sum(mask.numel() for mask in masks) == pytest.approx(
        sparsity, abs=0.01
    )
    make_permanent(weights)
    for (layer, _), mask in zip(weights, masks, strict=True):
        assert torch.equal(layer.weight == 0, mask == 0)  # zero where masked, nothing else zero
    # The weights that were kept are the baseline's, untouched, and they are the largest in magnitude.
    names = ["0.weight", "3.weight", "7.weight"]  # the state_dict keys of the pruned layers, in order
    pruned_state = model.state_dict()
    for name, mask in zip(names, masks, strict=True):
        kept = mask.bool()
        assert torch.equal(pruned_state[name][kept], original[name][kept])
    magnitudes = torch.cat([original[name].abs().flatten() for name in names])
    kept_all = torch.cat([mask.flatten().bool() for mask in masks])
    assert magnitudes[~kept_all].max() <= magnitudes[kept_all].min()
    assert zero_fraction(weights) == pytest.approx(sparsity, abs=0.01)


def test_gzip_size_falls_as_sparsity_rises_while_the_file_size_stays():
    dense = weights_bytes(small_net())
    sizes, gzipped = [], []
    for sparsity in SPARSITIES:
        model = small_net()
        prune_only(model, sparsity)
        data = weights_bytes(model)
        sizes.append(len(data))
        gzipped.append(gzip_size(data))
    assert sizes == [len(dense)] * len(SPARSITIES)  # dense tensors store a zero like any other value
    assert gzip_size(dense) > gzipped[0] > gzipped[1] > gzipped[2]
    assert gzipped[2] < 0.5 * gzip_size(dense)  # 75 % zeros: well under half


def test_global_scope_ranks_the_weights_of_all_layers_together():
    model = small_net()
    with torch.no_grad():
        model[7].weight.mul_(100.0)  # the linear layer's weights now dwarf the convolutions'
    per_layer = copy.deepcopy(model)
    prune_only(model, 0.5, "global")
    prune_only(per_layer, 0.5, "layer")
    # One threshold over all weights: the large layer keeps (nearly) all of its weights, so the convolutions lose
    # the 2/3 of theirs that make up half of the total (the middle one, with the smallest init range, the most).
    assert layer_sparsity(model[7]) < 0.01 and layer_sparsity(model[3]) > 0.6
    assert [layer_sparsity(per_layer[i]) for i in (0, 3, 7)] == pytest.approx([0.5, 0.5, 0.5], abs=0.01)


def test_frozen_weights_are_left_whole():
    """A frozen layer is a fixed part of the architecture (YOLOv8's DFL projection 0..15), not a learned weight."""
    model = small_net()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.clone()
    compressor = prune_only(model, 0.75, "layer")
    assert torch.equal(model[0].weight, frozen)
    assert layer_sparsity(model[3]) == pytest.approx(0.75, abs=0.01)
    # The reached sparsity counts only what was pruned (counting the frozen layer would dilute it to ~0.72).
    assert compressor.results()["sparsity_reached"] == pytest.approx(0.75, abs=0.001)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sparsity", 1.5),
        ("sparsity", 0.0),
        ("sparsity", 1.0),
        ("sparsity", -0.25),
        ("sparsity", "half"),
        ("epochs", -1),
        ("epochs", 2.5),
        ("lr", 0.0),
        ("lr", -0.01),
        ("scope", "channel"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_the_key(key, value):
    settings = {"sparsity": 0.5, "epochs": 5, "lr": 0.005, "scope": "global", key: value}
    with pytest.raises(ConfigError, match=rf"^compressor\.{key}={value}: expected "):
        UnstructuredPruning("prune_unstructured", **settings)


def test_the_config_file_gives_the_documented_defaults():
    cfg = compose_config("compress", ["compressor=prune_unstructured"])
    compressor = build(cfg.compressor)
    assert isinstance(compressor, UnstructuredPruning) and compressor.name == "prune_unstructured"
    options = compressor.options
    assert (options.sparsity, options.epochs, options.lr, options.scope) == (0.5, 5, 0.005, "global")
