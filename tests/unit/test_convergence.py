"""Training until converged (convergence=plateau): the stop on a scripted validation curve, through Training.fit."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from edgecomp.config import resolved_config, run_id
from edgecomp.errors import ConfigError
from edgecomp.evaluate.record import Record, RecordError
from edgecomp.lit.convergence import ConvergenceStop
from edgecomp.lit.training import Training, best_checkpoint, last_checkpoint
from edgecomp.models.checkpoint import load_state_dict
from tests.conftest import compose_config
from tests.helpers.scripted_curve import TwoBatches


def fit_on(curve, tmp_path, *overrides, cap=None, resume=False):
    """Training.fit of the smoke classifier config with its task module replaced by one that logs `curve`."""
    cfg = compose_config(
        "train",
        [
            "experiment=smoke",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"trainer.max_epochs={cap or len(curve)}",
            f"paths.results={tmp_path}",
            f"resume={str(resume).lower()}",
            *overrides,
        ],
    )
    with open_dict(cfg):
        cfg.dataset.module = OmegaConf.create(
            {
                "_target_": "tests.helpers.scripted_curve.ScriptedCurveModule",
                "_partial_": True,
                "curve": list(curve),
                "monitor": "val/top1",
            }
        )
    training = Training(cfg, resolved_config(cfg), TwoBatches(), False)  # no logger
    checkpoint = training.fit()
    summary = json.loads((training.run_dir / "training.json").read_text())
    kept = load_state_dict(training.run_dir / "model.pt")
    return training, checkpoint, summary, float(next(iter(kept.values())).flatten()[0])


PLATEAU = ["convergence=plateau", "convergence.patience=3", "convergence.min_delta=0.01", "convergence.min_epochs=1"]


def test_a_plateau_stops_the_run_and_the_best_epoch_is_kept(tmp_path):
    # best by 0.01 at epoch 3 (0.50); epochs 4-6 improve by less than 0.01 (0.505 is the best value, at epoch 5),
    # so the rule fires after epoch 6, well before the cap of 12
    curve = [0.10, 0.30, 0.50, 0.50, 0.505, 0.49, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
    training, checkpoint, summary, marker = fit_on(curve, tmp_path, *PLATEAU)
    assert summary["stopped"] == "plateau"
    assert summary["epochs"] == 6 and summary["max_epochs"] == 12
    assert summary["best_epoch"] == 5 and summary["best"] == pytest.approx(0.505)
    assert checkpoint == best_checkpoint(training.run_dir)
    assert marker == 4.0  # model.pt holds epoch 5's weights (0-based index 4), not the last epoch's
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 4
    assert torch.load(last_checkpoint(training.run_dir), weights_only=True)["epoch"] == 5  # resume goes on from here


def test_a_run_resumed_after_its_rule_fired_trains_no_further_epoch(tmp_path):
    curve = [0.10, 0.30, 0.50, 0.50, 0.505, 0.49, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
    training, _, first, _ = fit_on(curve, tmp_path, *PLATEAU)
    last = torch.load(last_checkpoint(training.run_dir), weights_only=True)
    _, _, resumed, marker = fit_on(curve, tmp_path, *PLATEAU, resume=True)
    assert resumed == first and marker == 4.0  # without the fix, epoch 7 (0.90) would have trained and been kept
    assert torch.load(last_checkpoint(training.run_dir), weights_only=True)["global_step"] == last["global_step"]


def test_a_rule_that_fires_on_the_caps_own_epoch_is_a_plateau(tmp_path):
    _, _, summary, _ = fit_on([0.1, 0.5, 0.5, 0.5, 0.5], tmp_path, *PLATEAU)  # waits 3 epochs after epoch 2: epoch 5
    assert summary["stopped"] == "plateau" and summary["epochs"] == 5


def test_a_metric_that_is_not_a_number_stops_the_run_as_diverged(tmp_path):
    _, _, summary, _ = fit_on([0.1, 0.2, float("nan"), 0.3, 0.4], tmp_path, *PLATEAU)
    assert summary["stopped"] == "diverged" and summary["epochs"] == 3 and summary["best_epoch"] == 2


def test_the_rule_judges_from_min_epochs_on(tmp_path):
    # near chance for 6 epochs, then learning: judged from the start, the rule would fire after epoch 4
    curve = [0.1] * 6 + [0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    _, _, early, _ = fit_on(curve, tmp_path / "from_the_start", *PLATEAU, "convergence.min_epochs=1")
    assert early["stopped"] == "plateau" and early["epochs"] == 4
    # judged from epoch 8: best 0.5 at epoch 10, three epochs without an improvement after it
    _, _, summary, marker = fit_on(curve, tmp_path / "from_8", *PLATEAU, "convergence.min_epochs=8")
    assert summary["stopped"] == "plateau" and summary["epochs"] == 13 and summary["min_epochs"] == 8
    assert summary["best_epoch"] == 10 and marker == 9.0


def test_a_curve_still_rising_stops_at_the_cap(tmp_path):
    curve = [0.1, 0.2, 0.3, 0.25, 0.4]
    _, _, summary, marker = fit_on(curve, tmp_path, *PLATEAU)
    assert summary["stopped"] == "cap" and summary["epochs"] == 5 and summary["best_epoch"] == 5
    assert marker == 4.0


def test_a_dip_within_the_patience_does_not_stop_it(tmp_path):
    # two epochs without an improvement, then one: the wait starts again
    curve = [0.1, 0.5, 0.45, 0.48, 0.6, 0.6, 0.6, 0.6, 0.7]
    _, _, summary, marker = fit_on(curve, tmp_path, *PLATEAU)
    assert summary["stopped"] == "plateau" and summary["epochs"] == 8
    assert summary["best_epoch"] == 5 and marker == 4.0


def test_without_a_convergence_rule_the_run_trains_its_budget_and_keeps_the_last_epoch(tmp_path):
    curve = [0.1, 0.9, 0.2]
    training, checkpoint, summary, marker = fit_on(curve, tmp_path)
    assert summary == {"epochs": 3, "max_epochs": 3, "stopped": "budget"}
    assert checkpoint == last_checkpoint(training.run_dir) and marker == 2.0


def test_the_rule_is_part_of_the_run_name_and_its_absence_is_not():
    plain = resolved_config(compose_config("train", ["experiment=smoke"]))
    converging = resolved_config(compose_config("train", ["experiment=smoke", "convergence=plateau"]))
    patient = resolved_config(
        compose_config("train", ["experiment=smoke", "convergence=plateau", "convergence.patience=9"])
    )
    # a fixed-budget run keeps the folder it had before the key (and dataset.convergence_metric) existed: the smoke
    # run's name at the commit before them
    assert run_id(plain) == "synthetic_cls-mobilenetv3_small_100-s0-996aee34ab"
    assert len({run_id(plain), run_id(converging), run_id(patient)}) == 3


@pytest.mark.parametrize(
    "training, accepted",
    [
        (None, True),
        ({"epochs": 3, "max_epochs": 3, "stopped": "budget"}, True),
        ({"epochs": 3, "max_epochs": 9, "stopped": "stalled"}, False),
        ({"epochs": -1, "max_epochs": 9, "stopped": "cap"}, False),
    ],
)
def test_the_records_training_field_is_checked_and_left_out_when_null(training, accepted):
    fields = {
        "task": "classification", "dataset": "d", "seed": 0, "config": {}, "artifact": "a", "model": "m",
        "compressor": "none", "device": "cpu", "hardware": None, "metrics": {"top1": 0.5}, "params": 1, "flops": 1,
        "latency_ms": None, "size_bytes": 1, "gzip_bytes": 1,
    }  # fmt: skip
    if not accepted:
        with pytest.raises(RecordError, match="record field 'training'"):
            Record(**fields, training=training)
        return
    written = Record(**fields, training=training).to_json()
    assert ("training" in written) == (training is not None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patience": 0}, r"^convergence\.patience=0: expected a whole number of epochs >= 1"),
        ({"min_delta": -0.1}, r"^convergence\.min_delta=-0\.1: expected the smallest change .* >= 0$"),
        ({"mode": "up"}, r"^convergence\.mode=up: expected max \(a metric that grows\) or min"),
        ({"min_epochs": 0}, r"^convergence\.min_epochs=0: expected a whole number of epochs >= 1 before"),
        ({"pateince": 3}, r"^convergence\.pateince=3: not a setting"),
    ],
)
def test_a_bad_rule_is_refused_in_one_line(kwargs, message):
    settings = {"monitor": "val/top1", "mode": "max", "min_delta": 0.01, "patience": 3, **kwargs}
    with pytest.raises(ConfigError, match=message):
        ConvergenceStop(**settings)
