"""compressor=prune_unstructured: the sparsity reached, the masks held through the fine-tune, what the zeros do to
the file and gzip sizes, and the compress.py run that records it."""

import copy
from pathlib import Path

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
from edgecomp.lit.training import Training
from edgecomp.models.checkpoint import load_state_dict
from edgecomp.pipelines.common import start_job
from edgecomp.pipelines.compress import compression_context
from tests.conftest import compose_config, read_jsonl, run_cli

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


def test_the_masks_are_held_through_the_fine_tune(tmp_path, data_dir, one_torch_thread, monkeypatch):
    cfg = compose_config(
        "compress",
        [
            "experiment=smoke",
            "compressor=prune_unstructured",
            "compressor.epochs=1",
            "compressor.lr=0.002",
            f"paths.data={data_dir}",
            f"paths.results={tmp_path}",
            "logger=none",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
        ],
    )
    job = start_job(cfg)
    model = job.new_model()
    before = [layer.weight.detach().clone() for layer, _ in prunable_weights(model)]

    # Which weights global L1 pruning at 0.5 must zero, worked out independently of the compressor.
    magnitudes = torch.cat([weight.abs().flatten() for weight in before])
    threshold = magnitudes.kthvalue(round(0.5 * magnitudes.numel())).values

    # What the fine-tune trains with: the run's optimizer (SGD, momentum 0.9) at the compressor's lr, no schedule.
    fine_tunes = []

    def recording_fine_tune(self, module, epochs, *callbacks):
        fine_tunes.append((epochs, module.configure_optimizers()))
        return fine_tune(self, module, epochs, *callbacks)

    fine_tune = Training.fine_tune
    monkeypatch.setattr(Training, "fine_tune", recording_fine_tune)
    compressor = build(cfg.compressor)
    pruned = compressor.compress(model, compression_context(job))
    ((epochs, optimizer),) = fine_tunes
    assert epochs == 1 and isinstance(optimizer, torch.optim.SGD)  # a bare optimizer: no scheduler
    assert (optimizer.defaults["lr"], optimizer.defaults["momentum"]) == (0.002, 0.9)
    after = [layer.weight.detach().cpu() for layer, _ in prunable_weights(pruned)]
    pruned_still_zero, kept_changed, kept_total = True, 0, 0
    for old, new in zip(before, after, strict=True):
        pruned_still_zero &= bool((new[old.abs() < threshold] == 0).all())
        kept = old.abs() > threshold
        kept_changed += int((new[kept] != old[kept]).sum())
        kept_total += int(kept.sum())
    assert pruned_still_zero, "a weight pruned before the fine-tune is no longer zero after it"
    assert kept_changed > 0.9 * kept_total, f"the fine-tune changed only {kept_changed} of {kept_total} kept weights"
    assert compressor.results()["sparsity_reached"] == pytest.approx(0.5, abs=0.001)
    assert not [key for key in pruned.state_dict() if key.endswith(("_orig", "_mask"))]


def test_compress_prunes_fine_tunes_and_records_both_sides(tmp_path, data_dir, monkeypatch):
    # Training on one thread, as one_torch_thread does in-process: on shared cores it is ~4x faster than two
    # threads that wait for each other. The latency measurement still pins device.threads.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_cli(
        "compress.py",
        "experiment=smoke",
        "compressor=prune_unstructured",
        "compressor.epochs=1",
        # A one-epoch baseline and a short latency protocol: what is tested here is the pruning and its record.
        "trainer.max_epochs=1",
        "latency.images=4",
        "latency.runs=2",
        "latency.rounds=2",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        "logger=none",
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    baseline, compression = record["baseline"], record["compression"]
    assert record["compressor"] == "prune_unstructured"
    assert compression["sparsity"] == 0.5 and compression["sparsity_reached"] == pytest.approx(0.5, abs=0.01)
    assert (compression["epochs"], compression["lr"], compression["scope"]) == (1, 0.005, "global")
    # The deployed file, counted here: the baseline's tensors, half of its convolution and linear weights zero.
    pruned, trained = load_state_dict(record["checkpoint"]), load_state_dict(baseline["checkpoint"])
    assert {k: v.shape for k, v in pruned.items()} == {k: v.shape for k, v in trained.items()}
    weights = [key for key, tensor in trained.items() if tensor.dim() >= 2]  # Conv2d and Linear weights
    total = sum(trained[key].numel() for key in weights)
    assert sum(int((trained[key] == 0).sum()) for key in weights) < 0.01 * total
    assert sum(int((pruned[key] == 0).sum()) for key in weights) / total == pytest.approx(0.5, abs=0.001)
    # Zeros do not change the raw file size (dense tensors store a zero like any other value); they shrink the gzip
    # size.
    assert record["size_bytes"] == baseline["size_bytes"] == Path(record["artifact"]).stat().st_size
    assert record["gzip_bytes"] < 0.8 * baseline["gzip_bytes"]
    for latency in (record["latency_ms"], baseline["latency_ms"]):  # both sides under the protocol asked for
        assert (latency["images"], latency["runs"], len(latency["passes_ms_per_image"])) == (4, 2, 2)
        assert latency["rounds"] == 2  # timed against each other: one pass of each per round


def test_a_bad_sparsity_fails_in_one_line_before_any_work(tmp_path, data_dir):
    proc = run_cli(
        "compress.py",
        "experiment=smoke",
        "compressor=prune_unstructured",
        "compressor.sparsity=1.5",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        "logger=none",
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert errors == [
        "edgecomp: error: compressor.sparsity=1.5: expected the fraction of weights to zero, "
        "0 < sparsity < 1 (e.g. 0.5)"
    ]
    assert not (tmp_path / "records.jsonl").exists() and not (tmp_path / "runs").exists()
