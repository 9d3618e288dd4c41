"""compressor=prune_unstructured in-process: the masks held through the fine-tune (given a context), and the
compress.py run that records it, with a bad sparsity refused in one line before any work (tests/unit/test_prune.py:
the sparsity reached, where the zeros are, what they do to the sizes)."""

from pathlib import Path

import pytest
import torch

from edgecomp.compress.pruning.unstructured import prunable_weights
from edgecomp.config import build
from edgecomp.lit.training import Training
from edgecomp.models.checkpoint import load_state_dict
from tests.conftest import read_jsonl, run_in_process


def test_the_masks_are_held_through_the_fine_tune(compression_context_for, one_torch_thread, monkeypatch):
    cfg, context = compression_context_for(
        "experiment=smoke",
        "compressor=prune_unstructured",
        "compressor.epochs=1",
        "compressor.lr=0.002",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    )
    model = build(cfg.model)
    before = [layer.weight.detach().clone() for layer, _ in prunable_weights(model)]

    # Which weights global L1 pruning at 0.5 must zero, worked out independently of the compressor.
    magnitudes = torch.cat([weight.abs().flatten() for weight in before])
    threshold = magnitudes.kthvalue(round(0.5 * magnitudes.numel())).values

    # What the fine-tune trains with: the run's optimizer (SGD, momentum 0.9) at the compressor's lr, no schedule.
    fine_tunes = []

    def recording_fine_tune(self, module, epochs, *callbacks, **data):
        fine_tunes.append((epochs, module.configure_optimizers()))
        return fine_tune(self, module, epochs, *callbacks, **data)

    fine_tune = Training.fine_tune
    monkeypatch.setattr(Training, "fine_tune", recording_fine_tune)
    compressor = build(cfg.compressor)
    pruned = compressor.compress(model, context)
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


def test_compress_prunes_fine_tunes_and_records_both_sides(tmp_path, data_dir, trained, one_torch_thread):
    # Training on one thread (one_torch_thread): on shared cores it is ~4x faster than two threads that wait for each
    # other. The latency measurement still pins device.threads.
    run_in_process(
        "compress.py",
        "experiment=smoke",
        "compressor=prune_unstructured",
        "compressor.epochs=1",
        # The session's smoke baseline (reused, not trained again) and a short latency protocol: what is tested here
        # is the pruning and its record.
        f"paths.runs={trained('smoke').runs}",
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
    proc = run_in_process(
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
