"""Bootstrap intervals over the evaluation images (`evaluate.bootstrap`, a record's `metrics_ci95`).

The COCO re-accumulation is checked against pycocotools itself: every image once must give coco_metrics' map and
map_small, and a resample that repeats images must give what pycocotools computes on a set where those images are
really copied (new ids). Top-1 goes through Top1Evaluator.evaluate with a predictor that returns fixed logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgecomp.data.detection import DetectionIndex
from edgecomp.errors import ConfigError
from edgecomp.evaluate.coco_bootstrap import ResampledAP
from edgecomp.evaluate.coco_evaluator import coco_evaluation_with_intervals
from edgecomp.evaluate.coco_metrics import coco_evaluation, coco_metrics, ground_truth_as_predictions
from edgecomp.evaluate.evaluator import Evaluation, Evaluator
from edgecomp.evaluate.record import Record, RecordError
from edgecomp.evaluate.runtimes.runtime import Predictor
from edgecomp.evaluate.top1_evaluator import Top1Evaluator

CATEGORIES = (1, 3, 7, 9)  # 9 never has ground truth: COCO leaves it out of the average


# ------------------------------------------------------------------------------------------------- COCO, by hand


def random_set(images: int = 14, seed: int = 0) -> tuple[DetectionIndex, list[dict]]:
    """Ground truth in all three COCO sizes, crowd regions, images without objects, a category with detections
    but no ground truth, an image with more than 100 detections, and detections that are shifted, duplicated,
    wrongly classed or made up; every score distinct."""
    rng = np.random.default_rng(seed)
    index = DetectionIndex(
        images=[{"id": i, "file_name": f"/nowhere/{i}.jpg", "width": 640, "height": 480} for i in range(1, images + 1)],
        categories=[{"id": c, "name": f"c{c}"} for c in CATEGORIES],
    )
    detections = []

    def detect(image_id, category, x, y, w, h):
        detections.append(
            {"image_id": image_id, "category_id": int(category), "bbox": [x, y, w, h], "score": float(rng.random())}
        )

    for image_id in range(1, images + 1):
        if image_id % 5 == 0:  # no objects, only false positives
            for _ in range(3):
                detect(image_id, rng.choice(CATEGORIES), *rng.uniform(0, 300, 2), *rng.uniform(10, 80, 2))
            continue
        for _ in range(rng.integers(1, 6)):
            category = int(rng.choice(CATEGORIES[:3]))
            side = float(rng.choice([12.0, 20.0, 50.0, 90.0, 150.0]))  # small, small, medium, medium, large
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            index.add_box(image_id, category, x, y, side, side * rng.uniform(0.8, 1.2))
            if rng.random() < 0.8:  # found, more or less well
                shift = rng.uniform(0, 0.4) * side
                detect(image_id, category, x + shift, y, side, side)
            if rng.random() < 0.3:  # a second, lower detection of the same object
                detect(image_id, category, x + 2, y + 2, side, side)
            if rng.random() < 0.2:  # the object with the wrong class
                detect(image_id, CATEGORIES[(CATEGORIES.index(category) + 1) % 4], x, y, side, side)
        if image_id % 4 == 1:
            index.ignore_region(image_id, 500, 350, 100, 100)
            detect(image_id, CATEGORIES[0], 510, 360, 40, 40)  # inside the crowd region: ignored
        detect(image_id, rng.choice(CATEGORIES), *rng.uniform(0, 500, 2), *rng.uniform(8, 40, 2))  # made up
    for _ in range(130):  # image 2: more than COCO's 100 detections per image, of which only the best 100 count
        detect(2, CATEGORIES[0], *rng.uniform(0, 600, 2), *rng.uniform(5, 60, 2))
    return index, detections


def copied_set(index: DetectionIndex, detections: list[dict], positions: list[int]) -> tuple[DetectionIndex, list]:
    """The images at `positions` (0-based, in id order), each a new image (id = its place + 1) with copies of its
    ground truth and detections: the resample made real, for pycocotools to evaluate from scratch."""
    ids = sorted(image["id"] for image in index.images)
    copied = DetectionIndex(categories=index.categories)
    copies = []
    for place, position in enumerate(positions):
        source, target = ids[position], place + 1
        copied.images.append({"id": target, "file_name": f"/nowhere/{target}.jpg", "width": 640, "height": 480})
        for annotation in index.annotations:
            if annotation["image_id"] == source:
                copied.add_box(target, annotation["category_id"], *annotation["bbox"], iscrowd=annotation["iscrowd"])
        copies += [{**d, "image_id": target} for d in detections if d["image_id"] == source]
    return copied, copies


AREAS = {"map": "all", "map_small": "small"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_image_once_reproduces_coco_metrics(seed):
    index, detections = random_set(seed=seed)
    metrics = coco_metrics(index, detections)
    assert 0.05 < metrics["map"] < 0.95 and 0.0 < metrics["map_small"] < 0.95  # not a degenerate case
    evaluation = coco_evaluation(index, detections)
    identity = np.arange(len(index.images))
    for metric, area in AREAS.items():
        assert ResampledAP(evaluation, area)(identity) == pytest.approx(metrics[metric], abs=1e-9), metric


def test_the_resampled_map_small_judges_sizes_at_the_evaluations_size_scale():
    """With size_scale 2 (a set rendered at twice its input) "small" covers boxes up to 64 px of the ground truth: the
    resample of every image once is coco_metrics' map_small at the same scale, not at COCO's."""
    index, detections = random_set(seed=0)
    at_input, at_coco = coco_metrics(index, detections, size_scale=2.0), coco_metrics(index, detections)
    assert abs(at_input["map_small"] - at_coco["map_small"]) > 1e-4  # the scale changes which objects count
    identity = np.arange(len(index.images))
    resampled = ResampledAP(coco_evaluation(index, detections, size_scale=2.0), "small")(identity)
    assert resampled == pytest.approx(at_input["map_small"], abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_repeated_image_counts_as_often_as_it_is_drawn(seed):
    index, detections = random_set(seed=seed)
    evaluation = coco_evaluation(index, detections)
    rng = np.random.default_rng(100 + seed)
    positions = [int(p) for p in rng.integers(0, len(index.images), size=len(index.images))]
    positions += [positions[0]] * 2 + [1, 1]  # one image three times or more, image 2 (130 detections) twice more
    assert len(set(positions)) < len(index.images) < len(positions)  # some images left out, others repeated
    real = coco_metrics(*copied_set(index, detections, positions))
    once = coco_metrics(*copied_set(index, detections, sorted(set(positions))))
    for metric, area in AREAS.items():
        resampled = ResampledAP(evaluation, area)(np.array(positions))
        assert resampled == pytest.approx(real[metric], abs=1e-9), metric
        assert abs(real[metric] - once[metric]) > 1e-4, metric  # counting a repeat once would have been caught


def test_a_resample_longer_than_the_set_counts_every_copy():
    index, detections = random_set(images=6, seed=3)
    evaluation = coco_evaluation(index, detections)
    positions = [0] * 25 + [1, 1, 2, 3, 4, 5] * 2  # 37 draws of 6 images, image 1 25 times
    real = coco_metrics(*copied_set(index, detections, positions))
    for metric, area in AREAS.items():
        assert ResampledAP(evaluation, area)(np.array(positions)) == pytest.approx(real[metric], abs=1e-9), metric


def test_a_resample_without_ground_truth_of_the_area_is_nan():
    index = DetectionIndex(
        images=[{"id": i, "file_name": f"/nowhere/{i}.jpg", "width": 640, "height": 480} for i in (1, 2)],
        categories=[{"id": 1, "name": "thing"}],
    )
    index.add_box(1, 1, 10, 10, 20, 20)  # small, only in image 1
    index.add_box(2, 1, 100, 100, 100, 100)  # large, only in image 2
    evaluation = coco_evaluation(index, ground_truth_as_predictions(index))
    small = ResampledAP(evaluation, "small")
    assert small(np.array([0, 1])) == pytest.approx(1.0)  # COCO's precision: 1 / (1 + machine epsilon)
    assert math.isnan(small(np.array([1, 1])))
    assert ResampledAP(evaluation, "all")(np.array([1, 1])) == pytest.approx(1.0)


def test_detection_intervals_hold_the_estimate_and_perfect_detections_give_one():
    index, detections = random_set(images=30)
    measured = coco_evaluation_with_intervals(index, detections, bootstrap=200)
    assert measured.metrics == coco_metrics(index, detections)
    assert measured.ci95["resamples"] == 200 and set(measured.ci95) == {"resamples", "map", "map_small"}
    for metric in AREAS:
        low, high = measured.ci95[metric]
        assert low < measured.metrics[metric] < high and high - low > 0.01, metric
    perfect = coco_evaluation_with_intervals(index, ground_truth_as_predictions(index), bootstrap=50)
    for metric in AREAS:
        assert perfect.ci95[metric] == pytest.approx([1.0, 1.0], abs=1e-12), metric
    assert coco_evaluation_with_intervals(index, detections, bootstrap=0).ci95 is None


# -------------------------------------------------------------------------------------------------------- top-1


class FixedLogits(Predictor):
    """A 'network' whose logits are given per batch: class 0 wins where the image is to be right, class 1 else."""

    def prepare(self, images):
        return images

    def __call__(self, inputs):
        return inputs  # the batch carries the logits


class Loader:
    def __init__(self, correct: np.ndarray, batch: int = 16):
        self.correct, self.batch = correct, batch

    def eval_dataloader(self):
        for start in range(0, len(self.correct), self.batch):
            right = torch.as_tensor(self.correct[start : start + self.batch])
            logits = torch.stack([right.float(), (~right).float(), torch.zeros(len(right))], dim=1)
            yield logits, torch.zeros(len(right), dtype=torch.long)


def outcomes(images: int, accuracy: float, seed: int = 0) -> np.ndarray:
    correct = np.zeros(images, dtype=bool)
    correct[: round(images * accuracy)] = True
    return np.random.default_rng(seed).permutation(correct)


def top1(correct: np.ndarray, bootstrap: int) -> Evaluation:
    return Top1Evaluator(num_classes=3, bootstrap=bootstrap).evaluate(None, FixedLogits(), Loader(correct), None)


def test_top1_interval_holds_the_estimate_and_narrows_with_more_images():
    few, many = top1(outcomes(50, 0.7), 1000), top1(outcomes(2000, 0.7), 1000)
    assert few.metrics["top1"] == pytest.approx(0.7) and many.metrics["top1"] == pytest.approx(0.7)
    widths = []
    for measured in (few, many):
        low, high = measured.ci95["top1"]
        assert low < measured.metrics["top1"] < high
        widths.append(high - low)
    # the binomial's 95 % half width is 1.96 sqrt(0.21 / n): about 0.25 wide at 50 images, 0.04 at 2000
    assert 0.18 < widths[0] < 0.32 and 0.03 < widths[1] < 0.05
    assert few.ci95["resamples"] == 1000


def test_top1_of_a_perfect_predictor_has_the_interval_one_one():
    assert top1(outcomes(40, 1.0), 500).ci95 == {"resamples": 500, "top1": [1.0, 1.0]}


def test_no_bootstrap_gives_no_interval_and_calling_gives_the_metrics_alone():
    measured = top1(outcomes(40, 0.5), 0)
    assert measured.ci95 is None and measured.metrics["top1"] == pytest.approx(0.5)
    evaluator = Top1Evaluator(num_classes=3, bootstrap=100)
    assert evaluator(None, FixedLogits(), Loader(outcomes(40, 0.25)), None) == {"top1": pytest.approx(0.25)}


@pytest.mark.parametrize("bootstrap", [-1, 2.5, True])
def test_a_resample_count_that_is_not_a_whole_number_is_refused(bootstrap):
    with pytest.raises(ConfigError, match="evaluate.bootstrap"):
        Top1Evaluator(num_classes=3, bootstrap=bootstrap)


def test_an_evaluator_without_intervals_gives_its_metrics_and_none():
    class Constant(Evaluator):
        def __call__(self, model, predictor, datamodule, device):
            return {"score": 0.5}

    assert Constant().evaluate(None, None, None, None) == Evaluation({"score": 0.5}, None)


# ------------------------------------------------------------------------------------------------------- record


def record(**fields) -> Record:
    base = dict(task="detection", dataset="d", seed=0, config={}, artifact="a", model=None, compressor=None)
    base |= dict(device=None, hardware=None, metrics={"map": 0.5}, params=None, flops=None, latency_ms=None)
    return Record(**base, size_bytes=None, gzip_bytes=None, **fields)


def test_the_record_keeps_the_intervals_and_checks_their_shape():
    assert record().to_json()["metrics_ci95"] is None
    ci95 = {"resamples": 1000, "map": [0.4, 0.6], "map_small": None}
    assert Record.from_json(record(metrics_ci95=ci95).to_json()).metrics_ci95 == ci95
    bad_ones = ({"resamples": 0, "map": [0.4, 0.6]}, {"resamples": 10, "map": [0.4]}, {"map": [0.6, 0.4]}, [0.4, 0.6])
    for bad in bad_ones:
        with pytest.raises(RecordError, match="metrics_ci95"):
            record(metrics_ci95=bad)


def test_the_bias_corrected_interval_moves_against_a_statistic_that_resamples_high():
    """Efron's BC: an unbiased statistic (a mean) gets about the plain percentile interval; one whose resamples run
    one standard error above the full set's value (as COCO AP's run high) gets an interval moved down: z0 is
    Phi^-1(about 16 %) = -1, so the percentiles read are Phi(-2 - 1.96) and Phi(-2 + 1.96), about 0 and 48 %."""
    from edgecomp.evaluate.uncertainty import bootstrap_interval

    x = np.random.default_rng(1).normal(size=400)
    se = x.std() / np.sqrt(400)

    def mean(idx):
        return float(x[idx].mean())

    def high(idx):
        return mean(idx) + se

    plain = bootstrap_interval(mean, 400, 2000)
    assert bootstrap_interval(mean, 400, 2000, estimate=float(x.mean())) == pytest.approx(plain, abs=se / 4)
    plain_high = bootstrap_interval(high, 400, 2000)
    corrected = bootstrap_interval(high, 400, 2000, estimate=float(x.mean()))
    assert plain_high[0] > float(x.mean()) - se  # the plain interval sits high
    assert corrected[0] < plain_high[0] - se and corrected[1] < plain_high[1] - se
    assert corrected[1] == pytest.approx(float(x.mean()) + se, abs=se / 2)  # the resamples' median, about
    assert corrected[0] < float(x.mean()) < corrected[1]
