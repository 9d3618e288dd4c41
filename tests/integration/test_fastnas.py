"""compressor=fastnas: ModelOpt FastNAS structured pruning searched, its artifact restored, compress.py's work
in-process (tests/unit/test_fastnas_rewrites.py: the model rewrites and the settings; tests/e2e/test_fastnas_cli.py:
YOLOv8n through both entry points, slow).

The fast tier prunes the classification smoke model (MobileNetV3-Small at 32 px, a coarse search space) from the
session's smoke baseline; the slow tier resumes that search from a checkpoint cut short.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from edgecomp.config import build
from edgecomp.errors import CheckpointError, ConfigError
from edgecomp.models.checkpoint import load_model, load_weights
from edgecomp.models.modelopt_artifact import ModelOptView
from edgecomp.models.outputs import flat_tensors
from edgecomp.pipelines import compress, evaluate
from tests.conftest import compose_config

DIVISOR = 16
BUDGET = 0.9
# MobileNetV3-Small at 32 px, its last stage searched (blocks.4: 6 searchable layers, whose smallest subnet keeps
# ~80% of the network's FLOPs) with two choices per layer (all of it or half, in multiples of 16): one score per
# layer, each after ModelOpt's 50 BatchNorm-recalibration passes (of 2 images).
SMOKE_CLASSIFIER = [
    "experiment=smoke",
    "compressor=fastnas",
    f"compressor.flops={BUDGET}",
    f"compressor.channel_divisor={DIVISOR}",
    "compressor.channel_ratios=[0.5,1.0]",
    "compressor.search_layers=[blocks.4.*]",
    "compressor.epochs=1",
    "compressor.calibration_batch_size=2",
    "device.threads=1",  # latency is not what these tests check; one thread is robust to a busy CPU
    "logger=none",
    "trainer.enable_progress_bar=false",
]

# ---------------------------------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=smoke", "model=densenet169"], "cannot prune model=densenet169: every layer of a dense block"),
        (["experiment=smoke", "model=densenet201"], "cannot prune model=densenet201: every layer of a dense block"),
    ],
)
def test_a_model_fastnas_cannot_search_is_refused_before_any_work(tmp_path, overrides, message):
    cfg = compose_config(
        "compress", [*overrides, "compressor=fastnas", f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}"]
    )
    with pytest.raises(ConfigError, match=message):
        compress.run(cfg)
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("overrides", "unmatched"),
    [
        (["model=faster_rcnn"], "network.model.[468].m.*, network.model.22.cv[23].[01].*"),  # smoke's YOLOv8 patterns
        (["compressor.search_layers=[network.model.4.m.*,network.model.99.*]"], "network.model.99.*"),  # one typo
    ],
)
def test_search_layers_that_name_no_layer_are_refused_before_any_work(tmp_path, overrides, unmatched):
    cfg = compose_config(
        "compress",
        ["experiment=smoke_fastnas", *overrides, f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}"],
    )
    with pytest.raises(ConfigError, match="compressor.search_layers=.*no layer of model=.* matches ") as refused:
        compress.run(cfg)
    assert str(refused.value).split(" matches ")[1].startswith(unmatched + " (")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------- compress.py


@pytest.fixture(scope="module")
def pruned_classifier(tmp_path_factory, data_dir, trained, one_torch_thread):
    """compress.py with compressor=fastnas on the classification smoke setting, from the session's smoke baseline:
    (config overrides, record)."""
    results = tmp_path_factory.mktemp("fastnas")
    overrides = [
        *SMOKE_CLASSIFIER,
        f"paths.results={results}",
        f"paths.data={data_dir}",
        f"paths.runs={trained('smoke').runs}",
    ]
    record = compress.run(compose_config("compress", overrides))
    return overrides, record


def test_the_pruned_classifier_fits_the_flops_budget_and_has_fewer_parameters(pruned_classifier):
    _, record = pruned_classifier
    baseline, fastnas = record["baseline"], record["fastnas"]
    assert record["flops"] <= BUDGET * baseline["flops"]
    assert record["params"] < baseline["params"]
    assert (fastnas["flops"]["before"], fastnas["flops"]["after"]) == (baseline["flops"], record["flops"])
    assert (fastnas["params"]["before"], fastnas["params"]["after"]) == (baseline["params"], record["params"])
    # ModelOpt's own FLOPs count (torchprofile, BatchNorm excluded), which the budget binds, is within it too.
    assert fastnas["flops"]["modelopt_after"] <= BUDGET * baseline["flops"] * 1.01
    # The latency ratio next to the FLOPs ratio, each compressed / baseline.
    ratios = record["vs_baseline"]
    assert ratios["flops_ratio"] == pytest.approx(record["flops"] / baseline["flops"])
    # the latency ratio from the two sides timed in paired rounds, with its interval and verdict
    assert ratios["latency_ratio"] == ratios["latency"]["ratio"] and ratios["latency_stat"] == "paired rounds"
    assert ratios["latency"]["ci95"][0] <= ratios["latency_ratio"] <= ratios["latency"]["ci95"][1]
    # The search scored the baseline, then every searchable layer's half-width choice once, on the task's metric;
    # only the layers of `search_layers` were searched.
    search = fastnas["search"]
    assert search["score_metric"] == "top1" and search["score_evaluations"] == 1 + len(fastnas["subnet_config"]) > 3
    assert all(name.startswith("blocks.4.") for name in fastnas["subnet_config"])
    # The expansion convolutions, hidden from ModelOpt behind timm's BatchNormAct2d until the view splits it.
    assert any(name.endswith("conv_pw.out_channels") for name in fastnas["subnet_config"])
    assert record["compression"]["channel_divisor"] == DIVISOR and record["compression"]["flops"] == "90%"
    json.dumps(record)  # the searched config is plain data
    table = (Path(record["checkpoint"]).parent / "comparison.md").read_text()
    assert f"{100 * (ratios['flops_ratio'] - 1):+.1f}%" in table and "Top-1" in table
    # both sides deployed by device=cpu's runtime: the pruned subnet and its baseline as FP32 ONNX files
    (runtime_line,) = [line for line in table.splitlines() if line.startswith("| Runtime")]
    assert [cell.strip() for cell in runtime_line.split("|")[2:4]] == ["onnxruntime fp32", "onnxruntime fp32"]


def test_pruned_channel_counts_are_multiples_of_the_channel_divisor(pruned_classifier):
    overrides, record = pruned_classifier
    subnet, space = record["fastnas"]["subnet_config"], record["fastnas"]["unpruned_config"]
    pruned = {name: kept for name, kept in subnet.items() if kept < space[name]}
    assert pruned and all(kept % DIVISOR == 0 for kept in pruned.values())
    # The searched widths include ones that are not multiples of 16 (e.g. squeeze-excitation's 72 and 144): the
    # divisor, not the architecture, made the choices multiples of it.
    assert any(width % DIVISOR for width in space.values())
    # The deployed network has exactly these widths.
    model = load_model(build(compose_config("compress", overrides).model), record["checkpoint"])
    for name, kept in subnet.items():
        layer_name, attribute = name.rsplit(".", 1)
        assert getattr(model.get_submodule(layer_name), attribute) == kept, name


def test_evaluate_restores_the_artifact_into_a_fresh_model_and_reproduces_the_record(pruned_classifier):
    overrides, record = pruned_classifier
    evaluated = evaluate.run(compose_config("evaluate", [*overrides, f"checkpoint={record['checkpoint']}"]))
    assert evaluated["metrics"] == record["metrics"] and record["metrics"]["top1"] > 0
    for field in ("params", "flops", "size_bytes", "gzip_bytes", "input_size"):
        assert evaluated[field] == record[field], field
    # The weights-only loader refuses the artifact with a message that says what it is.
    with pytest.raises(CheckpointError, match="is a ModelOpt artifact"):
        load_weights(build(compose_config("compress", overrides).model), record["checkpoint"])


def test_modelopt_recalibrates_batchnorm_for_each_candidate_from_the_50_calibration_batches(
    pruned_classifier, compression_context_for
):
    """ModelOpt re-estimates BatchNorm statistics (on `eval()`) only from a full queue of 50 batches, which the
    calibration batches fill; a layer after a narrowed one then gets statistics of its own."""
    import warnings

    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.autonas import MODELOPT_QUEUE_MAXLEN
    from modelopt.torch.nas.patch import prep_for_eval
    from modelopt.torch.nas.utils import sample
    from modelopt.torch.prune.pruning import PruneModeRegistry
    from modelopt.torch.utils.network import run_forward_loop

    from edgecomp.compress.pruning.fastnas_search import CalibrationBatches
    from edgecomp.compress.pruning.fastnas_space import search_space_rules

    overrides, _ = pruned_classifier
    cfg, context = compression_context_for(*overrides)
    view = ModelOptView(build(cfg.model)).eval()
    rules = search_space_rules(DIVISOR, (0.5, 1.0), ("blocks.4.*",))
    mtn.convert(view, [("fastnas", rules)], registry=PruneModeRegistry)
    batches = CalibrationBatches(context.datamodule, MODELOPT_QUEUE_MAXLEN, 2)
    assert len(list(batches)) == MODELOPT_QUEUE_MAXLEN == 50
    # What the searcher does first: the largest subnet, evaluated once with the data loader (which fills the queue).
    prep_for_eval(view, lambda model: run_forward_loop(model, batches, collect_func=lambda images: images))
    after_projection = view.model.blocks[4][0].bn3.bn  # follows conv_pwl, whose inputs the search narrows
    full_width_statistics = after_projection.running_var.clone()
    sample(view, min)  # a candidate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view.eval()
    assert not any("queue not filled" in str(w.message) for w in caught)
    assert not torch.equal(after_projection.running_var, full_width_statistics)


@pytest.mark.slow
def test_a_killed_search_resumes_from_its_checkpoint(pruned_classifier, tmp_path):
    """The search checkpoint holds the layers measured so far; a re-run measures only the others."""
    overrides, record = pruned_classifier
    # A copy of the fixture's results (trained baseline, search checkpoint): the re-run writes its artifact and
    # record there, and the other tests of pruned_classifier see the fixture's own, whatever the order.
    (results,) = [Path(o.split("=", 1)[1]) for o in overrides if o.startswith("paths.results=")]
    shutil.copytree(results, tmp_path / "results")
    overrides = [o for o in overrides if not o.startswith("paths.results=")] + [f"paths.results={tmp_path / 'results'}"]
    checkpoint = tmp_path / "results" / Path(record["fastnas"]["search"]["checkpoint"]).relative_to(results)
    state = torch.load(checkpoint, weights_only=True)
    for name in list(state["sensitivity_map"])[-2:]:  # killed before its last two layers were measured
        del state["sensitivity_map"][name]
    torch.save(state, checkpoint)

    resumed = compress.run(compose_config("compress", overrides))
    assert resumed["fastnas"]["search"]["checkpoint"] == str(checkpoint)
    search = resumed["fastnas"]["search"]
    assert search["resumed"] and search["score_evaluations"] == 2
    assert resumed["fastnas"]["subnet_config"] == record["fastnas"]["subnet_config"]
    assert search["baseline_score"] == record["fastnas"]["search"]["baseline_score"]


# ---------------------------------------------------------------------------------------------------- detectors


@pytest.mark.parametrize("family", ["retinanet", "faster_rcnn"])
def test_a_torchvision_detector_is_searched_restored_and_still_runs_torchvisions_post_processing(
    family, tmp_path, one_torch_thread
):
    """ModelOpt searches the detector's network (backbone, FPN, head; for Faster R-CNN the RPN head, its RoI pooling
    being a boundary); its outputs keep their channels, so the smallest subnet still goes through torchvision's own
    decoding and NMS (and Faster R-CNN's second stage), and the saved artifact restores into a fresh model with the
    same outputs. (FCOS shares RetinaNet's adapter code.)"""
    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.utils import sample
    from modelopt.torch.prune.pruning import PruneModeRegistry
    from modelopt.torch.trace import RobustTracer
    from torchvision.ops import MultiScaleRoIAlign

    from edgecomp.compress.pruning.fastnas_space import search_space_rules
    from edgecomp.models.modelopt_artifact import modelopt_conversion, restore_artifact, save_artifact

    cfg = compose_config("compress", ["experiment=smoke_det", f"model={family}", "dataset.image_size=64"])
    torch.manual_seed(0)
    detector = build(cfg.model).eval()
    full_params = sum(p.numel() for p in detector.parameters())
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        full_shapes = [t.shape for t in flat_tensors(detector(images))]
    view = ModelOptView(detector)
    with modelopt_conversion(view):
        mtn.convert(view, [("fastnas", search_space_rules(16))], registry=PruneModeRegistry)
    assert not RobustTracer.is_registered_leaf(MultiScaleRoIAlign)  # ModelOpt's registry is left as it was found
    sample(view, min)
    mtn.export(view)
    assert sum(p.numel() for p in detector.parameters()) < 0.7 * full_params
    with torch.no_grad():
        outputs = flat_tensors(detector(images))
        detections = detector.predict(images)
    assert [t.shape for t in outputs] == full_shapes
    assert len(detections) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in detections)

    restored = restore_artifact(build(cfg.model), save_artifact(view, tmp_path / "pruned.pth")).eval()
    with torch.no_grad():
        for got, expected in zip(flat_tensors(restored(images)), outputs, strict=True):
            torch.testing.assert_close(got, expected)
