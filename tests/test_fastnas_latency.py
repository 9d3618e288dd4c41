"""compressor=fastnas under a latency budget (`constraint: latency`), and the channel divisor from the device profile.

What the search's latency measurement decides is tested with a simulated measurement (a fake that makes one layer
group's width expensive and the others free): the search must narrow what the measurement says is expensive, where
the FLOPs search narrows something else. One smoke search times real subnets with ONNX Runtime, against a loose budget;
no test asserts a wall-clock figure.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from edgecomp.compress.fastnas import FastNASPruning
from edgecomp.config import build
from edgecomp.errors import ConfigError, DeviceError
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.models.modelopt_artifact import ModelOptView
from edgecomp.pipelines import compress
from tests.conftest import CONF, compose_config

# ------------------------------------------------------------------------------------------- settings and the divisor


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("compressor.constraint=foo", "compressor.constraint=foo: expected flops .* or latency"),
        ("compressor.latency=150%", "compressor.latency=150%: expected the pruned model's latency on the device"),
        ("compressor.latency=0", "compressor.latency=0: expected"),
        ("compressor.latency_protocol.images=0", "compressor.latency_protocol=.*images >= 1"),
        ("+compressor.latency_protocol.repeats=3", "compressor.latency_protocol=.*expected a mapping of images"),
        ("compressor.channel_divisor=0", "compressor.channel_divisor=0: expected a whole number >= 1"),
    ],
)
def test_bad_latency_settings_are_refused_when_the_compressor_is_built(override, message):
    cfg = compose_config(
        "compress", ["experiment=smoke", "compressor=fastnas", "compressor.constraint=latency", override]
    )
    with pytest.raises(ConfigError, match=message):
        build(cfg.compressor)


def test_a_device_profile_refuses_a_channel_divisor_below_one():
    cfg = compose_config("train", ["device=cpu", "device.channel_divisor=0"])
    with pytest.raises(DeviceError, match="device.channel_divisor must be a whole number >= 1"):
        build(cfg.device)


def test_every_device_profile_names_its_channel_divisor():
    for profile in sorted(path.stem for path in (CONF / "device").glob("*.yaml")):
        divisor = compose_config("train", [f"device={profile}"]).device.channel_divisor
        assert isinstance(divisor, int) and divisor >= 1, profile


def test_a_null_channel_divisor_is_the_device_profiles(tmp_path):
    cfg = compose_config("compress", ["experiment=smoke", "compressor=fastnas", "device.channel_divisor=8"])
    pruner = build(cfg.compressor)
    assert pruner.channel_divisor is None and pruner.divisor_for(build(cfg.device).channel_divisor) == 8
    assert pruner.settings()["channel_divisor"] is None
    # check() converts at the device's divisor: its refusal of a budget below the search space's floor (the last
    # stage of MobileNetV3-Small halved keeps ~80% of the FLOPs) names it
    cfg = compose_config(
        "compress",
        ["experiment=smoke", "compressor=fastnas", "device.channel_divisor=8", "compressor.flops=50%"]
        + ["compressor.search_layers=[blocks.4.*]", "compressor.channel_ratios=[0.5,1.0]"]
        + [f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}"],
    )
    with pytest.raises(ConfigError, match=r"compressor.channel_divisor=8 \(null: the device profile's\)"):
        compress.run(cfg)
    assert not (tmp_path / "data").exists()
    # an experiment that sets its own divisor keeps it, whatever the device's
    cfg = compose_config("compress", ["experiment=smoke_fastnas", "device.channel_divisor=16"])
    assert build(cfg.compressor).divisor_for(build(cfg.device).channel_divisor) == 8


# ------------------------------------------------------------------------------- the search, with a simulated latency

# Three layer groups of a tiny CNN, each kept whole or halved. The fake score says what halving each costs (the
# search narrows the cheapest first); the fake latency says which group's width costs time.
WIDE = "model.3.out_channels"  # 64 channels: most of the FLOPs (its 3x3 conv and the 1x1 conv after it)
STEM = "model.0.out_channels"  # 32 channels
LAST = "model.6.out_channels"  # 32 channels: little of the FLOPs
SCORE_DROP = {WIDE: 0.1, STEM: 0.2, LAST: 0.3}


def tiny_cnn() -> nn.Module:
    """Three searchable groups (the output convolution's 16 channels are the network's output: not searchable)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


FULL = {WIDE: 64, STEM: 32, LAST: 32}


def fake_score(view: nn.Module) -> float:
    from modelopt.torch.nas.utils import get_subnet_config

    config = get_subnet_config(view)
    return 1.0 - sum(drop for name, drop in SCORE_DROP.items() if config[name] < FULL[name])


class FakeLatency:
    """A simulated device: 1 ms, plus 1 ms for the full width of the one group `expensive` names (in proportion to
    the width it keeps); every other group's width is free."""

    def __init__(self, expensive: str) -> None:
        self.expensive = expensive
        self.measured: dict[str, float] = {}

    def __call__(self, view: nn.Module) -> float:
        from modelopt.torch.nas.utils import get_subnet_config

        config = get_subnet_config(view)
        ms = 1.0 + config[self.expensive] / FULL[self.expensive]
        self.measured[json.dumps(config, sort_keys=True, default=str)] = ms
        return ms


def run_search(pruner: FastNASPruning, folder: Path, latency: FakeLatency | None = None) -> tuple[dict, nn.Module]:
    """FastNASPruning.search on the tiny CNN at 32 px, channel divisor 8: (the searcher's state, the exported net)."""
    torch.manual_seed(0)
    view = ModelOptView(tiny_cnn()).eval()
    context = SimpleNamespace(
        datamodule=SimpleNamespace(calibration_images=lambda count: torch.rand(count, 3, 32, 32)),
        model_config=SimpleNamespace(name="tiny_cnn"),
        device=TargetDevice("cpu", "cpu", OnnxRuntime(), threads=1),
    )
    checkpoint = folder / f"search-{pruner.constraint}.pth"
    state = pruner.search(view, context, fake_score, checkpoint, torch.zeros(1, 3, 32, 32), 1, 8, latency)
    return state, view.model


def kept(network: nn.Module) -> dict[str, int]:
    return {name: network.get_submodule(name.split(".")[1]).out_channels for name in FULL}


def test_the_latency_search_narrows_what_the_measurement_says_is_expensive(tmp_path, one_torch_thread):
    from modelopt.torch.nas.algorithms import MODULE_TYPE_TO_CONSTRAINTS_FUNC

    ratios = {"channel_ratios": [0.5, 1.0], "epochs": 0}
    # FLOPs: halving the wide group alone (the cheapest in score) meets 60% of the FLOPs
    flops_state, flops_net = run_search(FastNASPruning("fastnas", flops="60%", **ratios), tmp_path)
    assert kept(flops_net) == {WIDE: 32, STEM: 32, LAST: 32}
    # Latency, where only the stem's width costs time: halving the wide group buys nothing, so the search goes on to
    # the stem (the next cheapest in score), which the FLOPs search left whole
    latency = FakeLatency(STEM)
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **ratios)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) == {WIDE: 32, STEM: 16, LAST: 32}
    budget = state["latency_budget"]
    assert budget == {"baseline_ms": 2.0, "budget_ms": pytest.approx(1.6)}
    assert state["best"]["is_satisfied"] and state["best"]["constraints"]["latency"] == 1.5 <= budget["budget_ms"]
    # Every subnet's latency was measured (the fake saw the unpruned net, the smallest and the bisection's subnets),
    # none interpolated from FLOPs: the chosen subnet's figure is the fake's own
    assert len(latency.measured) >= 3 and 1.5 in latency.measured.values()
    assert MODULE_TYPE_TO_CONSTRAINTS_FUNC == {}  # ModelOpt's table is left as it was found


def test_a_latency_budget_only_the_smallest_subnet_meets_takes_the_smallest(tmp_path, one_torch_thread):
    """Only the group the score says is costliest to narrow buys latency: ModelOpt's bisection never tries narrowing
    it (its threshold's upper end) and ends over budget; the smallest subnet is taken, as for a FLOPs budget."""
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", channel_ratios=[0.5, 1.0], epochs=0)
    state, network = run_search(pruner, tmp_path, FakeLatency(LAST))
    assert kept(network) == {WIDE: 32, STEM: 16, LAST: 16}
    assert state["best"]["is_satisfied"] and state["best"]["constraints"]["latency"] == 1.5


def test_a_latency_budget_the_smallest_subnet_misses_is_refused_with_its_latency(tmp_path, one_torch_thread):
    pruner = FastNASPruning("fastnas", constraint="latency", latency="60%", channel_ratios=[0.5, 1.0], epochs=0)
    with pytest.raises(ConfigError) as refused:
        run_search(pruner, tmp_path, FakeLatency(STEM))
    message = str(refused.value)
    assert message.startswith("compressor.latency=60%: model=tiny_cnn cannot be made that fast at")
    assert "its smallest subnet runs in 1.5 ms per image, 75.0% of the unpruned network's 2 ms" in message


# ------------------------------------------------------------------------------------- a real search, timed by ORT


def test_a_latency_budget_the_search_space_cannot_reach_is_refused_before_any_work(tmp_path):
    cfg = compose_config(
        "compress",
        ["experiment=smoke_fastnas", "compressor.constraint=latency", "compressor.latency=5%", "device.threads=1"]
        + [f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}", "logger=none"],
    )
    with pytest.raises(ConfigError, match="compressor.latency=5%: model=yolov8n cannot be made that fast at "):
        compress.run(cfg)
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_a_latency_constrained_smoke_search_meets_a_loose_budget(tmp_path, data_dir, one_torch_thread):
    """`experiment=smoke_fastnas` (YOLOv8n at 96 px) under 90% of the unpruned network's latency on device=cpu (ONNX
    Runtime), its channel divisor the device profile's: the chosen subnet meets the budget as the search timed it."""
    from modelopt.torch.nas.algorithms import MODULE_TYPE_TO_CONSTRAINTS_FUNC

    overrides = [
        "experiment=smoke_fastnas",
        "compressor.constraint=latency",
        "compressor.latency=90%",
        "compressor.channel_divisor=null",
        "device.channel_divisor=8",
        "device.threads=1",  # one thread is robust to a busy CPU; what is timed is the same subnets
        "compressor.epochs=0",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    record = compress.run(compose_config("compress", overrides))
    latency, baseline = record["fastnas"]["latency"], record["baseline"]
    assert latency["subnet_ms"] <= latency["budget_ms"] == pytest.approx(0.9 * latency["baseline_ms"])
    assert latency["subnet_share"] == pytest.approx(latency["subnet_ms"] / latency["baseline_ms"])
    assert latency["subnets_measured"] >= 2 and latency["protocol"]["runtime"] == "onnxruntime"
    assert latency["protocol"]["threads"] == 1 and latency["protocol"]["images"] == 16
    assert record["flops"] < baseline["flops"] and record["params"] < baseline["params"]
    assert record["fastnas"]["flops"]["target"] is None  # no FLOPs budget bound this search
    settings = record["compression"]
    assert (settings["constraint"], settings["latency"], settings["channel_divisor"]) == ("latency", "90%", None)
    assert settings["channel_divisor_used"] == 8 == record["fastnas"]["search"]["channel_divisor"]
    subnet, unpruned = record["fastnas"]["subnet_config"], record["fastnas"]["unpruned_config"]
    pruned = {name: width for name, width in subnet.items() if width < unpruned[name]}
    assert pruned and all(width % 8 == 0 for width in pruned.values())
    assert MODULE_TYPE_TO_CONSTRAINTS_FUNC == {}


# ---------------------------------------------------------------------------------------------------- the benchmarks


@pytest.mark.slow
def test_the_fastnas_latency_benchmark_runs_a_flops_then_a_latency_search(tmp_path, data_dir, capsys):
    """Tiny settings (96 px, 1 epoch, two channel ratios): run 2's budget is run 1's measured latency ratio, and it
    starts from run 1's sensitivities."""
    from benchmarks import fastnas_latency

    rows = fastnas_latency.main(
        ["--image-size", "96", "--epochs", "1", "--fine-tune-epochs", "0", "--channel-ratios", "0.25", "1.0"]
        + ["--threads", "1", "--results", str(tmp_path), "--data", str(data_dir)]
    )
    out = capsys.readouterr().out
    assert "latency cut / FLOPs cut" in out
    flops = rows[0]
    assert flops["constraint"] == "flops" and flops["flops_ratio"] <= 0.66
    if len(rows) == 2:  # the FLOPs search's subnet was faster than its baseline: a latency run at that ratio
        latency = rows[1]
        budget = float(latency["budget"].rstrip("%")) / 100
        assert latency["constraint"] == "latency" and budget == pytest.approx(flops["latency_ratio"], abs=1e-4)
        assert latency["search_ratio"] <= budget
