"""compressor=fastnas under a latency budget (`constraint: latency`), and the channel divisor from the device profile.

What the search's latency measurement decides is tested with a simulated measurement (a fake that makes one layer
group's width expensive and the others free): the search must narrow what the measurement says is expensive, where
the FLOPs search narrows something else. One smoke search times real subnets with ONNX Runtime, against a loose budget;
no test asserts a wall-clock figure.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from edgecomp.compress.pruning.fastnas import FastNASPruning
from edgecomp.compress.pruning.fastnas_latency import MIN_NOISE, SubnetLatency
from edgecomp.compress.pruning.fastnas_search import search_subnet
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
        ("compressor.latency_protocol.rounds=0", "compressor.latency_protocol=.*rounds >= 1"),
        (
            "compressor.latency_ranking=flops",
            "compressor.latency_ranking=flops: expected drop_per_ms .*, drop .* or both",
        ),
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
    assert pruner.options.channel_divisor is None and pruner.divisor_for(build(cfg.device).channel_divisor) == 8
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


class FakeLatency(SubnetLatency):
    """A simulated device: 1 ms, plus 1 ms for the full width of the one group `expensive` names (in proportion to
    the width it keeps); every other group's width is free. A subnet's "deployment" is its widths; `first_timings`
    (widths -> ms) replaces the first timing of those subnets: a noisy first measurement. Pairing with the unpruned
    network, caching, noise and confirmation are SubnetLatency's own."""

    def __init__(
        self, expensive: str, first_timings: dict[tuple[int, ...], float] | None = None, rounds: int = 1
    ) -> None:
        device = TargetDevice("cpu", "cpu", OnnxRuntime(), threads=1)
        super().__init__(device, 32, torch.zeros(1, 3, 32, 32), None, rounds)
        self.expensive = expensive
        self.first_timings = dict(first_timings or {})

    def _deploy(self, view: nn.Module, folder: Path) -> tuple[int, ...]:
        from modelopt.torch.nas.utils import get_subnet_config

        config = get_subnet_config(view)
        return tuple(config[name] for name in FULL)

    def _time(self, widths: tuple[int, ...]) -> float:
        if widths in self.first_timings:
            return self.first_timings.pop(widths)
        return 1.0 + dict(zip(FULL, widths, strict=True))[self.expensive] / FULL[self.expensive]


def run_search(
    pruner: FastNASPruning, folder: Path, latency: FakeLatency | None = None, score=fake_score
) -> tuple[dict, nn.Module]:
    """fastnas_search.search_subnet on the tiny CNN at 32 px, channel divisor 8: (the searcher's state, the exported net)."""
    torch.manual_seed(0)
    view = ModelOptView(tiny_cnn()).eval()
    context = SimpleNamespace(
        datamodule=SimpleNamespace(calibration_images=lambda count: torch.rand(count, 3, 32, 32)),
        model_config=SimpleNamespace(name="tiny_cnn"),
        device=TargetDevice("cpu", "cpu", OnnxRuntime(), threads=1),
    )
    options = pruner.options
    checkpoint = folder / f"search-{options.constraint}-{options.latency_ranking}.pth"
    state = search_subnet(options, view, context, score, checkpoint, torch.zeros(1, 3, 32, 32), 1, 8, latency)
    return state, view.model


def kept(network: nn.Module) -> dict[str, int]:
    return {name: network.get_submodule(name.split(".")[1]).out_channels for name in FULL}


HALVES = {"channel_ratios": [0.5, 1.0], "epochs": 0}


@pytest.mark.parametrize(
    ("ranking", "wide_kept"),
    [
        # ModelOpt's order: the wide group (least score lost) is halved first although it buys nothing, then the stem
        ("drop", 32),
        # by score lost per ms saved: only the stem is halved, the wide group, which saves no time, stays whole
        ("drop_per_ms", 64),
    ],
)
def test_the_latency_search_narrows_what_the_measurement_says_is_expensive(
    tmp_path, one_torch_thread, ranking, wide_kept
):
    from modelopt.torch.nas.algorithms import MODULE_TYPE_TO_CONSTRAINTS_FUNC

    # FLOPs: halving the wide group alone (the cheapest in score) meets 60% of the FLOPs
    flops_state, flops_net = run_search(FastNASPruning("fastnas", flops="60%", **HALVES), tmp_path)
    assert kept(flops_net) == {WIDE: 32, STEM: 32, LAST: 32}
    # Latency, where only the stem's width costs time: halving the wide group buys nothing, so the search goes on to
    # the stem (the next cheapest in score), which the FLOPs search left whole
    latency = FakeLatency(STEM)
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", latency_ranking=ranking, **HALVES)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) == {WIDE: wide_kept, STEM: 16, LAST: 32}
    budget = state["latency_budget"]
    assert (budget["baseline_ms"], budget["budget_ms"]) == (2.0, pytest.approx(1.6))
    assert budget["noise"] == MIN_NOISE  # the fake's repeated timings agree
    assert state["best"]["is_satisfied"] and state["best"]["constraints"]["latency"] == 1.5 <= budget["budget_ms"]
    # Every subnet's latency was measured (the fake saw the unpruned net, the smallest and the bisection's subnets),
    # none interpolated from FLOPs: the chosen subnet's figure is the fake's own
    assert len(latency.measured) >= 3 and 1.5 in latency.measured.values()
    assert MODULE_TYPE_TO_CONSTRAINTS_FUNC == {}  # ModelOpt's table is left as it was found
    if ranking == "drop_per_ms":
        # the per-layer table: what halving each group alone saves
        assert budget["saved_ms"] == {WIDE: {32: 0.0, 64: 0.0}, STEM: {16: 0.5, 32: 0.0}, LAST: {16: 0.0, 32: 0.0}}
    else:
        assert budget["saved_ms"] is None


def test_a_latency_budget_only_the_smallest_subnet_meets_takes_the_smallest(tmp_path, one_torch_thread):
    """Only the group the score says is costliest to narrow buys latency: ModelOpt's bisection never tries narrowing
    it (its threshold's upper end) and ends over budget; the smallest subnet is taken, as for a FLOPs budget."""
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", latency_ranking="drop", **HALVES)
    state, network = run_search(pruner, tmp_path, FakeLatency(LAST))
    assert kept(network) == {WIDE: 32, STEM: 16, LAST: 16}
    assert state["best"]["is_satisfied"] and state["best"]["constraints"]["latency"] == 1.5


def test_ranked_by_drop_per_ms_the_search_narrows_only_the_group_that_buys_time(tmp_path, one_torch_thread):
    """The same budget ranked by score lost per ms saved: the costliest group in score is the only one that saves
    time, so it alone is halved and the two free groups keep their width (and the score ModelOpt's order lost)."""
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **HALVES)
    state, network = run_search(pruner, tmp_path, FakeLatency(LAST))
    assert kept(network) == {WIDE: 64, STEM: 32, LAST: 16}
    assert state["best"]["is_satisfied"] and state["best"]["constraints"]["latency"] == 1.5


def test_a_subnet_timed_just_over_the_budget_is_timed_again_and_the_median_decides(tmp_path, one_torch_thread):
    """The stem-halved subnet (1.5 ms, budget 1.6 ms) is first timed at 1.62 ms, within the 2% noise of the budget:
    it is timed twice more (1.5, 1.5) and taken. The unpruned network, far over budget, is timed only to calibrate."""
    first = {(64, 16, 32): 1.62}
    latency = FakeLatency(STEM, first_timings=first)
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **HALVES)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) == {WIDE: 64, STEM: 16, LAST: 32}
    assert latency.timings[next(key for key, ms in latency.measured.items() if ms == 1.5 and "64" in key)] == [
        1.62,
        1.5,
        1.5,
    ]
    assert latency.confirmed == 1 and state["best"]["constraints"]["latency"] == 1.5
    # far from the budget, one timing each (the unpruned network: the 3 calibration timings)
    assert sorted(len(timed) for timed in latency.timings.values()) == [1] * (len(latency.timings) - 2) + [3, 3]


def test_a_subnet_timed_far_over_the_budget_is_not_timed_again(tmp_path, one_torch_thread):
    """A noisy first timing well outside the noise band (1.9 ms against 1.6) rejects the subnet outright."""
    latency = FakeLatency(STEM, first_timings={(64, 16, 32): 1.9})
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **HALVES)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) != {WIDE: 64, STEM: 16, LAST: 32} and latency.confirmed == 0


def test_rounds_of_paired_timings_outvote_a_burst_that_catches_one_session(tmp_path, one_torch_thread):
    """The same noisy first session (1.9 ms against a 1.6 ms budget) in a timing of 3 rounds: the other two pairs
    read 1.5 ms, their median ratio counts, and the subnet is taken. The burst widens the subnet's interval over the
    budget, so it is timed again (3 timings, 9 pairs) before the median decides."""
    latency = FakeLatency(STEM, first_timings={(64, 16, 32): 1.9}, rounds=3)
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **HALVES)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) == {WIDE: 64, STEM: 16, LAST: 32}
    assert state["best"]["constraints"]["latency"] == 1.5 and latency.confirmed == 1
    key = next(key for key, ms in latency.measured.items() if ms == 1.5 and "64" in key)
    assert latency.ratios[key] == pytest.approx([0.95] + [0.75] * 8)


def test_a_subnet_whose_interval_clears_the_budget_is_taken_after_one_timing(tmp_path, one_torch_thread):
    """Three pairs that agree (1.5 ms each against a 1.6 ms budget): the interval lies below the budget, so the
    subnet is accepted on its first timing; every subnet is decided by its interval, none by a point."""
    latency = FakeLatency(STEM, rounds=3)
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **HALVES)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) == {WIDE: 64, STEM: 16, LAST: 32}
    key = next(key for key, ms in latency.measured.items() if ms == 1.5 and "64" in key)
    assert latency.interval_ms(key)[1] < 1.6 and len(latency.timings[key]) == 1
    assert latency.confirmed == 0 and latency.decided_by_point == 0


def balanced_score(view: nn.Module) -> float:
    """fake_score, but halving the wide group and the stem together costs 0.2 less than the sum of their drops (a
    network that stays balanced): what one-group-at-a-time sensitivities cannot see."""
    from modelopt.torch.nas.utils import get_subnet_config

    config = get_subnet_config(view)
    together = config[WIDE] < FULL[WIDE] and config[STEM] < FULL[STEM]
    return fake_score(view) + (0.2 if together else 0.0)


@pytest.mark.parametrize(
    ("score", "winner", "wide_kept", "scores"),
    [
        # the stem alone (drop_per_ms: it is the group that buys time) scores 0.8; drop's finalist, the wide group and
        # the stem halved, 0.7
        (fake_score, "drop_per_ms", 64, {"drop_per_ms": 0.8, "drop": 0.7}),
        # halved together they score 0.9: drop's finalist wins, although the sensitivities rank it lower
        (balanced_score, "drop", 32, {"drop_per_ms": 0.8, "drop": pytest.approx(0.9)}),
    ],
)
def test_ranked_both_ways_the_finalist_that_scores_higher_wins(
    tmp_path, one_torch_thread, score, winner, wide_kept, scores
):
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", latency_ranking="both", **HALVES)
    state, network = run_search(pruner, tmp_path, FakeLatency(STEM), score)
    assert kept(network) == {WIDE: wide_kept, STEM: 16, LAST: 32}
    finalists = state["latency_budget"]["finalists"]
    assert {order: finalist["score"] for order, finalist in finalists.items()} == scores
    assert all(finalist["constraints"]["latency"] == 1.5 for finalist in finalists.values())
    assert state["best"]["config"] == finalists[winner]["config"] and state["best"]["is_satisfied"]


class DriftingLatency(FakeLatency):
    """The simulated device on a machine that slows down by 3 % with every session timed."""

    def __init__(self, expensive: str) -> None:
        super().__init__(expensive)
        self.sessions = 0

    def _time(self, widths: tuple[int, ...]) -> float:
        self.sessions += 1
        return super()._time(widths) * 1.03**self.sessions


def test_paired_timing_keeps_a_slowing_machine_from_deciding_the_search(tmp_path, one_torch_thread):
    """Timed alone, each later subnet would look slower than the last (by 3 % per session: after 10 sessions the
    stem-halved subnet would read 2 ms against a 1.6 ms budget); paired with the unpruned network, each ratio is off
    by one session's drift only, and the search takes the subnet it takes on a steady machine: the stem halved, the
    free groups whole."""
    latency = DriftingLatency(STEM)
    pruner = FastNASPruning("fastnas", constraint="latency", latency="80%", **HALVES)
    state, network = run_search(pruner, tmp_path, latency)
    assert kept(network) == {WIDE: 64, STEM: 16, LAST: 32}
    assert latency.sessions >= 10
    share = state["best"]["constraints"]["latency"] / state["latency_budget"]["baseline_ms"]
    assert share == pytest.approx(0.75 / 1.03, rel=1e-6)


def test_the_latency_table_times_each_groups_narrowest_choice_and_interpolates_the_rest(one_torch_thread):
    """Four widths of the stem (8..32 channels at divisor 8): its narrowest is timed (1.25 ms against 2 ms: 0.75 ms
    saved), the widths between are interpolated in the channels removed, which on this linear device is exact."""
    from modelopt.torch.nas.utils import get_subnet_config

    from edgecomp.compress.pruning.fastnas_latency import latency_table

    view = ModelOptView(tiny_cnn()).eval()
    FastNASPruning("fastnas", channel_ratios=[0.25, 0.5, 0.75, 1.0])._convert(view, "tiny_cnn", 8)
    latency = FakeLatency(STEM)
    choices = {STEM: [8, 16, 24, 32], WIDE: [16, 32, 48, 64]}
    table = latency_table(view, choices, latency, 2.0)
    assert table[STEM] == {8: 0.75, 16: 0.5, 24: 0.25, 32: 0.0}
    assert table[WIDE] == {16: 0.0, 32: 0.0, 48: 0.0, 64: 0.0}  # its width costs nothing on this device
    assert len(latency.timings) == 2  # one timed deployment per group
    assert get_subnet_config(view)[STEM] == 32 and get_subnet_config(view)[WIDE] == 64  # left whole


def test_a_latency_budget_the_smallest_subnet_misses_is_refused_with_its_latency(tmp_path, one_torch_thread):
    pruner = FastNASPruning("fastnas", constraint="latency", latency="60%", **HALVES)
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


@pytest.mark.parametrize(
    "ranking",
    [
        # ~2 min each on 2 busy cores (13 groups scored, every subnet timed paired); in the fast tier the searchers run
        # on the simulated device above, and SubnetLatency times real ONNX Runtime files in the unreachable-budget
        # refusal test
        pytest.param("drop", marks=pytest.mark.slow),
        # the per-layer table adds a timed ONNX export per group (~4 s each at 96 px on 2 busy cores), and `both` a
        # bisection in ModelOpt's order and a score of each finalist
        pytest.param("both", marks=pytest.mark.slow),
    ],
)
def test_a_latency_constrained_smoke_search_meets_a_loose_budget(tmp_path, data_dir, one_torch_thread, ranking):
    """`experiment=smoke_fastnas` (YOLOv8n at 96 px) under 90% of the unpruned network's latency on device=cpu (ONNX
    Runtime), its channel divisor the device profile's: the chosen subnet meets the budget as the search timed it,
    every subnet timed paired with the unpruned network."""
    from modelopt.torch.nas.algorithms import MODULE_TYPE_TO_CONSTRAINTS_FUNC

    overrides = [
        "experiment=smoke_fastnas",
        "compressor.constraint=latency",
        "compressor.latency=90%",
        "compressor.channel_divisor=null",
        "device.channel_divisor=8",
        "device.threads=1",  # one thread is robust to a busy CPU; what is timed is the same subnets
        "compressor.channel_ratios=[0.5,1.0]",  # each group halved or whole
        f"compressor.latency_ranking={ranking}",
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
    assert latency["ranking"] == ranking and latency["protocol"]["paired_with_unpruned"]
    assert latency["protocol"]["rounds"] == 3  # the search's default
    if ranking == "both":  # every searched group was timed narrowed alone (the per-layer table)
        assert set(latency["saved_ms"]) == set(subnet) and latency["subnets_measured"] >= len(subnet)
        assert all(saved >= 0 for row in latency["saved_ms"].values() for saved in row.values())
        finalists = latency["finalists"]
        assert set(finalists) <= {"drop_per_ms", "drop"}
        assert all(f["latency_ms"] <= latency["budget_ms"] for f in finalists.values())
        chosen = [f for f in finalists.values() if f["chosen"]]
        assert chosen and all(f["pruned"] == pruned for f in chosen)
        if len(chosen) < len(finalists):  # two subnets: scored, the higher chosen
            assert chosen[0]["score"] == max(f["score"] for f in finalists.values())
    else:
        assert latency["saved_ms"] is None and latency["finalists"] is None
    assert MODULE_TYPE_TO_CONSTRAINTS_FUNC == {}


# ---------------------------------------------------------------------------------------------------- the benchmarks


@pytest.mark.slow
def test_the_fastnas_latency_benchmark_runs_a_flops_then_a_latency_search(tmp_path, data_dir, capsys):
    """Tiny settings (96 px, 1 epoch, two channel ratios, one FLOPs budget): the latency search's budget is the FLOPs
    file timed against the baseline's right after it, once per ranking, each starting from the first run's
    sensitivities; every file is then timed against the others in paired rounds, with intervals and a verdict."""
    from benchmarks import fastnas_latency

    rows = fastnas_latency.main(
        ["--image-size", "96", "--epochs", "1", "--fine-tune-epochs", "0", "--channel-ratios", "0.25", "1.0"]
        + ["--threads", "1", "--results", str(tmp_path), "--data", str(data_dir), "--flops", "66%"]
        + ["--rounds", "2", "--images", "4", "--runs", "2", "--rankings", "both", "drop"]
    )
    out = capsys.readouterr().out
    assert "latency cut / FLOPs cut" in out and (tmp_path / fastnas_latency.PLOT).is_file()
    flops = rows[0]
    assert flops["constraint"] == "flops" and flops["flops_ratio"] <= 0.66
    for r in rows:
        assert Path(r["artifact"]).is_file() and r["alternated"].rounds == 2
        assert r["alternated"].ci95[0] <= r["alternated"].ratio <= r["alternated"].ci95[1]
    for latency in rows[1:]:  # the FLOPs search's subnet was faster than its baseline: latency runs at that ratio
        budget = float(latency["budget"].rstrip("%")) / 100
        assert latency["constraint"] == "latency" and budget == pytest.approx(flops["reached"].ratio, abs=1e-4)
        assert latency["search_ratio"] <= budget
        assert latency["verdict"] in ("ahead", "behind", "mixed", "same within noise")
    assert [r["run"] for r in rows[1:]] in ([], ["latency/both 66%", "latency/drop 66%"])


def test_the_benchmark_verdict_weighs_both_intervals():
    from benchmarks.fastnas_latency import verdict
    from edgecomp.evaluate.uncertainty import ratio_interval

    faster, same = ratio_interval([0.9, 0.91, 0.89]), ratio_interval([0.95, 1.05, 1.0])
    slower = ratio_interval([1.1, 1.12, 1.09])
    assert verdict(same, (0.001, 0.01)) == "ahead"  # more mAP at no more latency
    assert verdict(faster, (-0.004, 0.003)) == "ahead"  # less latency at no less mAP
    assert verdict(same, (-0.01, -0.001)) == "behind"
    assert verdict(slower, None) == "behind"
    assert verdict(faster, (-0.01, -0.002)) == "mixed"
    assert verdict(same, (-0.004, 0.003)) == "same within noise"
