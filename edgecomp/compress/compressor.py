"""The interface every compressor implements, and how compress.py hands it the baseline.

A compressor is built from its config and its settings are fixed from then on (`settings()`); what the run finds
or measures (the teacher it trained, the sparsity reached, the loss curve) is `results()`. Its settings are a typed
class of its own (`settings_class`, edgecomp.settings): the constructor validates its keyword settings into it once,
so no compressor checks a type or a range by hand; what can only be checked against the run (a model it cannot
prune, a teacher missing) is its check() of a RunSpec. Everything it needs besides the model comes in a
CompressionContext (edgecomp.compress.context): it never imports the pipelines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch.nn as nn

from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.size import save_weights
from edgecomp.settings import Settings, validated


class Compressor(ABC):
    """Turns a trained baseline into the model that is deployed.

    `compress` may modify and return `model` (it receives a copy of the baseline) or return a new one; the
    pipeline measures its wall time and peak memory and evaluates baseline and result on the same device.
    `context` gives it the data, the device, the training service and its folder.
    """

    # True for a compressor whose result is the baseline unchanged: one evaluation then serves both sides.
    deploys_baseline: bool = False
    # True for a compressor whose result is a deployed file (an ExportedModel: PTQ), which no later stage of a recipe
    # can train or prune: it must come last.
    deploys_file: bool = False
    # True for a compressor whose result has another architecture than its input (FastNAS): what save() writes is
    # then what every later stage's weights need to be loaded into.
    changes_architecture: bool = False
    # The compressor's settings: the keys its config may have besides `name` (none by default).
    settings_class: ClassVar[type[Settings]] = Settings

    def __init__(self, name: str, **settings: Any) -> None:
        self.name = name  # the config option's name, which the record reports
        # The settings, validated once (a ConfigError naming the key otherwise)
        self.options = validated(self.settings_class, settings)

    def check(self, spec: RunSpec) -> None:
        """Raise a ConfigError for a run this compressor cannot work with (e.g. distillation without a teacher).
        compress.py calls it before any work: before the data is generated or the baseline trained."""
        return None  # by default every run whose config composes is fine

    def prepare(self, context: CompressionContext) -> None:
        """Get what the compressor needs besides the baseline (e.g. a distillation teacher, trained once and reused
        like the baseline). compress.py calls it before the compression's cost is measured: a cached prerequisite
        is no part of that cost, so the record does not depend on whether an earlier run had trained it."""
        return None  # by default the baseline is all a compressor needs

    @abstractmethod
    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module | ExportedModel:
        """The deployed model: an nn.Module (its weights are the artifact, run by the device's runtime) or an
        ExportedModel (a file and the runtime that runs it)."""

    def deploy_baseline(self, model: nn.Module, context: CompressionContext) -> nn.Module | ExportedModel:
        """The baseline as this compressor's output is deployed, for a like-for-like comparison (PTQ: the FP32
        model exported to the same format and run by the same runtime). By default the module itself."""
        return model

    def save(self, model: nn.Module, path: Path) -> Path:
        """Write the deployable artifact of `model` (what compress() returned as an nn.Module) to `path`; returns
        the file written. By default its weights (state_dict) alone, which `evaluate.py checkpoint=<file>` loads into
        a fresh model. A compressor whose result a fresh model cannot take as plain weights (structured pruning
        changes the shapes) writes a format of its own, which edgecomp.models.checkpoint.load_model reads."""
        save_weights(model, path)
        return path

    def settings(self) -> dict[str, Any]:
        """The compressor's settings, recorded under the record's `compression`: what it was built with, the same
        before and after compress(). By default the validated settings as they are."""
        return self.options.model_dump()

    @property
    def trains(self) -> bool:
        """Whether compress() (or prepare()) trains through context.training: under trainer=ddp every rank then runs
        it, the training split across them. A compressor that does not train runs in the main process alone, after
        the other ranks have stopped."""
        return False

    @property
    def replaces_network(self) -> bool:
        """Whether compress() returns another network than the one it is given (KD into a smaller student), which
        no recipe stage may do: the next stage's weights must load into the model's own architecture."""
        return False

    def compression_fields(self) -> dict[str, Any]:
        """The record's `compression` besides the cost: the settings, then what the run found (results)."""
        settings, results = self.settings(), self.results()
        if clashes := sorted(set(settings) & set(results)):
            raise RuntimeError(f"compressor={self.name}: results() would replace the settings {clashes}")
        return {**settings, **results}

    def results(self) -> dict[str, Any]:
        """What prepare() and compress() found or measured (e.g. the sparsity reached, the teacher used), recorded
        under `compression` beside the settings; empty before compress()."""
        return {}

    def record_fields(self) -> dict[str, Any]:
        """Top-level fields this compressor adds to the record (e.g. a distiller's per-term losses under
        `distill`), after compress(). They may not replace the fields every record has."""
        return {}
