"""COCO average precision of a resample of the evaluation images, without matching anything again.

pycocotools' `COCOeval.evaluate()` matches detections to ground truth once per (category, area range, image) and
keeps the outcome in `evalImgs`; `accumulate()` then only concatenates those per-image outcomes over the images,
sorts the detections by score and reads the interpolated precision off the cumulative true and false positives.
A bootstrap resample of the images therefore only needs that second step again. `ResampledAP` does it for one
area range at 100 detections per image (`map`: "all", `map_small`: "small"), reproducing `accumulate()`'s
arithmetic (same sort, same cumulative sums, same precision envelope, same recall thresholds) with one
difference that makes it fast: an image drawn c times weighs its detections and ground truth by c instead of being
concatenated c times. That gives the same precision at every recall threshold as the concatenation would (a run of
c identical detections raises the precision monotonically when they are true positives and lowers it when they
are false ones, so none of the points in between is a maximum the envelope or a threshold picks up); the one
exception is a tie in score between detections of different images, whose order pycocotools takes from where the
images fall in the resample and this takes from the images' order in the index. tests/unit/test_bootstrap.py checks
both properties against pycocotools itself: every image once reproduces `coco_metrics`, and a resample with
repeated images equals pycocotools run on a set where those images really are copied.

Resampling biases AP upward (the envelope takes maxima of noisy precisions): on a constructed 500-image,
80-category set the resamples' mean map was 0.290 against the set's 0.281 (2 standard deviations), so the percentile
interval [0.281, 0.299] barely holds the estimate. Read a detection interval as the spread, not as centred on map.
"""

from __future__ import annotations

import numpy as np
from pycocotools.cocoeval import COCOeval

MAX_DETECTIONS = 100  # COCO's AP is read at 100 detections per image


class ResampledAP:
    """The COCO AP of an evaluated COCOeval at area range `area` and 100 detections per image, for any resample of
    its images: `ResampledAP(evaluation, "small")(indices)` with `indices` the positions (in the evaluation's sorted
    image ids) of the resampled images, repeats allowed. NaN where no category has ground truth in the resample.

    All categories and IoU thresholds are handled at once: each category's detections (sorted as accumulate() sorts
    them) lie side by side in one (IoU threshold, detection) array, a segment per category, and every step works
    within segments: cumulative sums on whole numbers (counts of true and false positives), the precision, a search
    for the recall thresholds, and the precision envelope read at the points found."""

    def __init__(self, evaluation: COCOeval, area: str = "all") -> None:
        # What evaluate() laid evalImgs out by: category, area range, image. (A private attribute evaluate() sets,
        # which the pycocotools stubs leave out.)
        params = evaluation._paramsEval  # type: ignore[attr-defined]
        if not evaluation.evalImgs:
            raise ValueError("ResampledAP needs a COCOeval that has run evaluate()")
        self.images = images = len(params.imgIds)
        self.thresholds = np.asarray(params.recThrs, dtype=float)
        rows, areas, first = len(params.iouThrs), len(params.areaRng), params.areaRngLbl.index(area) * images
        segments = []
        for k in range(len(params.catIds)):
            start = k * areas * images + first
            segment = _category(evaluation.evalImgs[start : start + images], images)
            if segment is not None:  # a category without ground truth is left out of every resample, as COCO does
                segments.append(segment)
        self.categories = categories = len(segments)
        self.positives = np.array([segment[3] for segment in segments], dtype=np.int64).reshape(-1, images)  # (K, I)
        lengths = np.array([segment[0].size for segment in segments], dtype=np.int64)  # (K,)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.image = np.concatenate([segment[0] for segment in segments] or [np.zeros(0, np.int64)])  # (D,)
        # C order: the cumulative sums run along the detections
        self.true = np.ascontiguousarray(np.concatenate([s[1] for s in segments] or [np.zeros((rows, 0), bool)], 1))
        self.false = np.ascontiguousarray(np.concatenate([s[2] for s in segments] or [np.zeros((rows, 0), bool)], 1))
        detections = self.image.size
        self.lengths = lengths
        self.nonempty = starts[lengths > 0]  # the first column of each category that has detections
        # (IoU threshold, category) rows: where each one starts in the flattened array, and a range of whole numbers
        # of its own for the search (wider than any count of true positives a resample of as many images reaches)
        self.row = np.arange(rows)[:, None] * categories + np.repeat(np.arange(categories), lengths)[None, :]  # (T, D)
        self._set_stride(int(images * self.positives.max(initial=0) + 2))
        self.row_starts = (np.arange(rows)[:, None] * detections + starts[None, :])[:, :, None]  # (T, K, 1)
        self.segment_starts = (np.arange(rows)[:, None] * detections + self.nonempty[None, :]).ravel()

    def _set_stride(self, stride: int) -> None:
        rows = self.true.shape[0]
        self.stride = stride
        self.key_offsets = self.row * stride
        self.query_offsets = (np.arange(rows * self.categories) * stride).reshape(rows, self.categories, 1)

    def __call__(self, indices: np.ndarray) -> float:
        counts = np.bincount(np.asarray(indices, dtype=np.int64), minlength=self.images)
        positives = self.positives @ counts  # (K,) ground truth that counts, per category
        present = positives > 0
        if not present.any():
            return float("nan")
        precision = self._precision(counts, positives)  # (T, K, R)
        # COCOeval.summarize: the mean over the (T, R, K) entries of the categories with ground truth
        return float(np.mean(precision.transpose(0, 2, 1)[:, :, present].ravel()))

    def _precision(self, counts: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """accumulate()'s precision[t, r, k, area, maxDets=100] for the resample with these image counts, as (T, K,
        R); categories without ground truth in the resample come out as 0 (the caller leaves them out)."""
        rows, detections = self.true.shape
        thresholds = self.thresholds
        if positives.max() + 2 > self.stride:  # a resample of more images than the evaluation has
            self._set_stride(int(positives.max()) + 2)
        weights = counts[self.image]  # (D,) how often each detection's image was drawn
        true = self._counts(self.true * weights)  # (T, D) whole numbers, as accumulate()'s tp_sum and fp_sum
        false = self._counts(self.false * weights)
        precision = true.astype(float) / ((true + false).astype(float) + np.spacing(1))
        # np.searchsorted(recall, recThrs) with recall = tp / positives, on whole numbers: recall >= r exactly where
        # tp >= needed(r), the least whole number whose float quotient reaches r (float division is monotone); all
        # (IoU threshold, category) rows in one search, each row shifted into its own range
        divisor = np.maximum(positives, 1)[:, None].astype(float)
        needed = np.ceil(thresholds[None, :] * divisor)  # (K, R)
        needed = np.where((needed - 1) / divisor >= thresholds, needed - 1, needed)
        needed = np.where(needed / divisor < thresholds, needed + 1, needed).astype(np.int64)
        keys = (true + self.key_offsets).ravel()
        found = np.searchsorted(keys, (needed[None, :, :] + self.query_offsets).ravel()).reshape(
            rows, -1, thresholds.size
        )
        inside = found - self.row_starts < self.lengths[None, :, None]  # else no point reaches the recall: 0
        if not inside.any():
            return np.zeros(found.shape)
        # the envelope (the precision raised to the best that follows in the category) at the points found: the
        # maxima of the blocks between consecutive points found (and category starts), then a maximum accumulated
        # backwards over the blocks of each category (the category as the real part of a complex number: numpy
        # orders complex numbers by real, then imaginary part)
        # (a point found twice makes an empty block that reduceat fills with the point's own precision: harmless)
        points = np.sort(np.concatenate([found[inside], self.segment_starts]))
        blocks = np.maximum.reduceat(precision.ravel(), points)
        category = np.searchsorted(self.segment_starts, points, side="right")  # which category's block
        backwards = np.maximum.accumulate((category[::-1] * -1.0) + 1j * blocks[::-1])
        envelope = backwards.imag[::-1]
        values = envelope[np.searchsorted(points, np.where(inside, found, points[0]))]
        return np.where(inside, values, 0.0)

    def _counts(self, weighted: np.ndarray) -> np.ndarray:
        """Cumulative sums along the detections that restart at every category (`weighted` is a fresh array)."""
        if weighted.shape[1] == 0:
            return weighted
        totals = np.add.reduceat(weighted, self.nonempty, axis=1)  # (T, categories with detections)
        weighted[:, self.nonempty[1:]] -= totals[:, :-1]  # take the category before back out: restart from 0
        return np.cumsum(weighted, axis=1, out=weighted)


def _category(entries: list, images: int) -> tuple | None:
    """One category's per-image outcomes at one area range (evalImgs[k, area, :]), detections sorted as accumulate()
    sorts them: (image of each detection, true positive (T, D), false positive (T, D), non-ignored ground truth per
    image). Detections ignored at every IoU threshold, and those after the category's last true positive, are
    left out: they never change which precision a recall threshold reads (they add a point with the precision and
    recall of the one before it, or only lower precisions after the highest recall). None for a category without
    ground truth."""
    scores, image, matched_per_image, ignored_per_image = [], [], [], []
    positives = np.zeros(images, dtype=np.int64)
    for position, entry in enumerate(entries):
        if entry is None:  # neither ground truth nor detections of the category in the image
            continue
        count = len(entry["dtScores"][:MAX_DETECTIONS])
        scores.append(np.asarray(entry["dtScores"][:MAX_DETECTIONS], dtype=float))
        image.append(np.full(count, position, dtype=np.int64))
        matched_per_image.append(np.asarray(entry["dtMatches"])[:, :MAX_DETECTIONS])
        ignored_per_image.append(np.asarray(entry["dtIgnore"])[:, :MAX_DETECTIONS])
        positives[position] = np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0)
    if not positives.any():
        return None
    order = np.argsort(-np.concatenate(scores), kind="mergesort")  # accumulate()'s sort
    matched = np.concatenate(matched_per_image, axis=1)[:, order] != 0
    ignored = np.concatenate(ignored_per_image, axis=1)[:, order].astype(bool)
    true, false = matched & ~ignored, ~matched & ~ignored
    keep = true.any(axis=0) | false.any(axis=0)
    hits = np.flatnonzero(true.any(axis=0))
    keep[hits[-1] + 1 if hits.size else 0 :] = False
    return np.concatenate(image)[order][keep], true[:, keep], false[:, keep], positives
