"""Typed settings (edgecomp.settings): every compressor's keys checked when it is built, one refusal line naming the
key, the same rules for every compressor (a whole number of epochs, no misspelt key); what check() is asked about (a
RunSpec); a diverged training as a runtime failure."""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

import edgecomp.compress
from edgecomp.compress.context import RunSpec
from edgecomp.compress.distillation.hinton_kd import KnowledgeDistillation
from edgecomp.compress.pruning.fastnas import FastNASPruning
from edgecomp.compress.pruning.unstructured import UnstructuredPruning
from edgecomp.config import build
from edgecomp.errors import ConfigError, EdgecompError, TrainingDiverged
from edgecomp.pipelines import compress, recipe
from edgecomp.settings import Settings
from tests.conftest import compose_config, run_in_process

# Every compressor that trains for `epochs`, with what its config needs to build
WITH_EPOCHS = {
    "finetune": ["experiment=smoke", "compressor=finetune"],
    "prune_unstructured": ["experiment=smoke", "compressor=prune_unstructured"],
    "fastnas": ["experiment=smoke", "compressor=fastnas"],
    "kd": ["experiment=smoke_compress", "compressor=kd"],
    "scalekd": ["experiment=smoke_scalekd"],
    "fitnet": ["experiment=smoke_scalekd", "compressor=fitnet"],
    "od2017": ["experiment=smoke_scalekd", "compressor=od2017"],
}
EVERY_COMPRESSOR = {
    **WITH_EPOCHS,
    "none": ["experiment=smoke", "compressor=none"],
    "ptq_fp16": ["experiment=smoke", "compressor=ptq_fp16"],
    "ptq_int8": ["experiment=smoke", "compressor=ptq_int8"],
}


def refusal(overrides: list[str]) -> str:
    """The one line building the config's compressor is refused with."""
    with pytest.raises(ConfigError) as refused:
        build(compose_config("compress", overrides).compressor)
    message = str(refused.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", sorted(WITH_EPOCHS))
def test_every_compressor_with_epochs_refuses_a_fraction_of_an_epoch(name):
    # Before typed settings KD truncated 2.5 to 2 and the detection distillers trained for 2.5 "epochs"
    message = refusal([*WITH_EPOCHS[name], "compressor.epochs=2.5"])
    assert message.startswith("compressor.epochs=2.5: expected a whole number of ")


@pytest.mark.parametrize("name", sorted(EVERY_COMPRESSOR))
def test_every_compressor_refuses_a_misspelt_key_naming_it(name):
    message = refusal([*EVERY_COMPRESSOR[name], "+compressor.epoch=3"])
    assert message.startswith("compressor.epoch=3: not a setting: expected one of ")
    if name in WITH_EPOCHS:
        assert "epochs" in message.split("expected one of ")[1].split(", ")  # the key meant is listed


def test_a_misspelt_nested_key_is_named_with_its_place():
    message = refusal(["experiment=smoke_scalekd", "+compressor.sdf.dilation=[1,2]"])
    assert message == (
        "compressor.sdf.dilation=[1, 2]: not a setting: expected one of enabled, weight_sharing, embed_channels, "
        "dilations"
    )


def test_the_command_line_prints_a_misspelt_key_as_one_error_line_before_any_work(tmp_path):
    # compress.py's own main on that command line, in this process (tests/e2e/test_cli.py: such errors from a new one)
    proc = run_in_process(
        "compress.py",
        "experiment=smoke",
        "compressor=prune_unstructured",
        "+compressor.sparsty=0.5",
        f"paths.results={tmp_path}",
        f"paths.data={tmp_path / 'data'}",
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert error.startswith("edgecomp: error: compressor.sparsty=0.5: not a setting: expected one of sparsity, ")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("key", ["flops", "latency"])
def test_a_percentage_and_a_fraction_are_the_same_fastnas_budget(key):
    as_percentage = FastNASPruning("fastnas", **{key: "66%"})
    as_fraction = FastNASPruning("fastnas", **{key: 0.66})
    assert getattr(as_percentage.options, key) == getattr(as_fraction.options, key) == pytest.approx(0.66)
    # the record gives the budget as a percentage either way
    assert as_percentage.settings()[key] == as_fraction.settings()[key] == "66%"
    assert FastNASPruning("fastnas", **{key: "12.5%"}).settings()[key] == "12.5%"


@pytest.mark.parametrize("budget", ["100%", "0%", "66", 66, 1.0, "66 percent", True])
def test_a_budget_that_is_not_a_share_below_one_is_refused(budget):
    with pytest.raises(
        ConfigError, match=rf"^compressor\.flops={budget}: expected the pruned model's FLOPs as a share"
    ):
        FastNASPruning("fastnas", flops=budget)


def test_a_cross_field_rule_is_refused_with_its_own_message():
    # ScaleKD's assistant splits its heads into one group per MSC rate, and its width over the heads
    assert refusal(["experiment=smoke_scalekd", "compressor.csa.heads=3"]) == (
        "compressor.csa.heads=3: must split evenly over the 4 rates [1, 2, 4, 8] (one head group per rate)"
    )
    assert refusal(["experiment=smoke_scalekd", "compressor.csa.rates=[1,2,4]"]) == (
        "compressor.csa.heads=4: must split evenly over the 3 rates [1, 2, 4] (one head group per rate)"
    )
    assert refusal(["experiment=smoke_scalekd", "compressor.csa.heads=8", "compressor.csa.dim=100"]) == (
        "compressor.csa.dim=100: must be a multiple of heads=8"
    )
    build(compose_config("compress", ["experiment=smoke_scalekd", "compressor.csa.heads=8"]).compressor)  # 128 / 8


def test_a_value_of_the_wrong_type_is_refused_not_converted():
    with pytest.raises(ConfigError, match=r"^compressor\.lr=0\.01: expected "):
        UnstructuredPruning("prune_unstructured", sparsity=0.5, lr="0.01")
    with pytest.raises(ConfigError, match=r"^compressor\.sparsity=True: expected "):
        UnstructuredPruning("prune_unstructured", sparsity=True)
    with pytest.raises(ConfigError, match=r"^compressor\.sparsity: missing: expected the fraction of weights"):
        UnstructuredPruning("prune_unstructured")
    # an int where a number is expected is that number
    assert UnstructuredPruning("prune_unstructured", sparsity=0.5, lr=1).settings()["lr"] == 1.0


def _settings_classes() -> list[type[Settings]]:
    for module in pkgutil.walk_packages(edgecomp.compress.__path__, "edgecomp.compress."):
        importlib.import_module(module.name)
    found, pending = [], [Settings]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.append(subclass)
            pending.append(subclass)
    return found


def test_every_setting_says_what_is_expected():
    """A refusal reads `<key>=<value>: expected <description>`: every field of every settings class has one."""
    classes = _settings_classes()
    assert len(classes) >= 10
    missing = [f"{cls.__name__}.{name}" for cls in classes for name, f in cls.model_fields.items() if not f.description]
    assert not missing


# ---------------------------------------------------------------------------------------------------- check() and runs


def test_compress_builds_the_compressor_once_for_the_check_and_the_work(monkeypatch):
    built, checked = [], []
    init, check = UnstructuredPruning.__init__, UnstructuredPruning.check

    def counting_init(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    def recording_check(self, spec):
        checked.append((self, spec))
        check(self, spec)

    monkeypatch.setattr(UnstructuredPruning, "__init__", counting_init)
    monkeypatch.setattr(UnstructuredPruning, "check", recording_check)
    monkeypatch.setattr(compress, "run_job", lambda cfg, work: work)  # the job's work, not run
    monkeypatch.setattr(compress, "compress", lambda job, compressor: compressor)
    cfg = compose_config("compress", ["experiment=smoke", "compressor=prune_unstructured"])
    work = compress.run(cfg)
    assert work(None) is built[0] and len(built) == 1
    ((compressor, spec),) = checked
    assert compressor is built[0] and spec == RunSpec.from_config(cfg)
    assert (spec.task, spec.dataset, spec.image_size, spec.metrics) == (
        "classification",
        "synthetic_cls",
        32,
        ("top1",),
    )


def test_a_recipe_stage_checks_with_the_baseline_as_teacher_and_the_config_untouched(monkeypatch):
    cfg = compose_config("compress", ["experiment=smoke", "recipe=prune_kd_int8"])
    assert cfg.get("teacher") is None
    before = OmegaConf.to_container(cfg)
    seen = []
    monkeypatch.setattr(KnowledgeDistillation, "check", lambda self, spec: seen.append(spec))
    stages = recipe.check_recipe(cfg)
    (spec,) = seen
    assert spec.teacher is cfg.model and spec.model is cfg.model  # the unpruned baseline teaches the recovery
    assert OmegaConf.to_container(cfg) == before and cfg.get("teacher") is None
    assert [stage.name for stage in stages] == ["prune", "recover", "quantize"]
    # and the real check accepts the baseline as the teacher
    monkeypatch.undo()
    stages[1].compressor.check(spec)
    with pytest.raises(ConfigError, match="compressor=kd needs a teacher"):
        stages[1].compressor.check(dataclasses.replace(spec, teacher=None))


def test_a_recipe_with_a_teacher_checks_its_stages_with_that_teacher(monkeypatch):
    cfg = compose_config("compress", ["experiment=smoke", "recipe=prune_kd_int8", "teacher=mobilenetv3_large_100"])
    seen = []
    monkeypatch.setattr(KnowledgeDistillation, "check", lambda self, spec: seen.append(spec))
    recipe.check_recipe(cfg)
    (spec,) = seen
    assert spec.teacher is cfg.teacher and spec.teacher.name == "mobilenetv3_large_100"


def test_a_diverged_distillation_is_a_runtime_failure_not_bad_input():
    assert issubclass(TrainingDiverged, EdgecompError) and not issubclass(TrainingDiverged, ConfigError)
    kd = KnowledgeDistillation("kd", epochs=1, lr=0.1)
    kd.teacher = nn.Linear(4, 3)

    def diverging_fine_tune(module, epochs, datamodule=None):
        module.epoch_losses = [2.0, math.nan][: epochs + 1]

    training = SimpleNamespace(
        default_lr=0.1,
        optimizer=lambda lr: partial(torch.optim.SGD, lr=lr),
        scheduler=lambda epochs: None,
        fine_tune=diverging_fine_tune,
        initial_model=lambda: nn.Linear(4, 3),
    )
    context = SimpleNamespace(training=training, warm_start=False, model_config=SimpleNamespace(num_classes=3))
    with pytest.raises(
        TrainingDiverged, match=r"^compressor=kd: the distillation loss diverged \(epoch means \[2.0, nan"
    ):
        kd.compress(nn.Linear(4, 3), context)
