"""The classifier recipe the recipe tests run, and its run in this process recording where each fine-tune starts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omegaconf import DictConfig

# The benchmark paper's methods chained on the smoke classifier: prune 50 % (1 fine-tune epoch), KD recovery from
# the unpruned baseline (1 epoch), INT8.
SMOKE_CLASSIFIER_RECIPE = [
    "experiment=smoke",
    "recipe=prune_kd_int8",
    "recipe.stages.prune.epochs=1",
    "recipe.stages.recover.epochs=1",
    "recipe.stages.quantize.calib_images=16",
    "logger=none",
    "trainer.enable_progress_bar=false",
]
STAGES = ["prune", "recover", "quantize"]


def run_recording_starts(cfg: DictConfig) -> tuple[Any, list[tuple[str, dict[str, torch.Tensor]]]]:
    """compress.py's work on `cfg` (a recipe) in this process, on one thread: (what it returned, the state every
    fine-tune started from, in order: (the Lightning module's type, the trained network's state dict))."""
    from edgecomp.lit.hinton_distillation_module import HintonDistillationModule
    from edgecomp.lit.training import Training
    from edgecomp.pipelines import compress

    starts = []
    fine_tune = Training.fine_tune

    def recording_fine_tune(self, module, epochs, *callbacks, **data):
        network = module.student if isinstance(module, HintonDistillationModule) else module.model
        starts.append((type(module).__name__, {k: v.clone() for k, v in network.state_dict().items()}))
        return fine_tune(self, module, epochs, *callbacks, **data)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(Training, "fine_tune", recording_fine_tune)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_torch_thread, and as the processes the resume test starts (OMP_NUM_THREADS=1)
    try:
        returned = compress.run(cfg)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()
    return returned, starts
