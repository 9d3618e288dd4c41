"""The benchmark paper's findings, one by one, against what a folder of experiment=edge_benchmark records measured.

The paper (`../shared/papers/001_fa38f3155e146267.txt`: PTQ, unstructured pruning and Hinton KD of six classifiers
on Jetson boards, flowers102) states its results as findings; each `Finding` here sets one of them beside edgecomp's
figure with its interval over seeds and says whether it was reproduced:

- FP16 loses no accuracy; INT8's loss varies by model (the paper: largest on the two MobileNets); INT8's latency on
  the CPU the records were timed on (`hardware` names its 8-bit dot-product instructions);
- unstructured pruning shrinks the gzip size, not the file or the latency; its accuracy against the same epochs of
  plain fine-tuning (compressor=finetune_control, the control the paper lacks);
- KD into MobileNetV3-Small against the same student trained alone for the same epochs (compressor=kd_control), and
  against MobileNetV3-Small trained alone to convergence (the paper's "scratch");
- the file sizes of FP16 and INT8, and the compression time ranking.

Every change is paired by seed: a compressed record against its own baseline (the record's `baseline`), or two
compressed records of one model and seed that started from the same trained baseline. A per-model change is the
mean over the seeds with its Student's t 95 % interval and verdict (edgecomp.evaluate.uncertainty); a finding over
the models says how many were better, worse or the same within noise. Pure functions on record dicts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecomp.evaluate.uncertainty import BETTER, SAME, WORSE, PairedDifference, paired_difference
from edgecomp.report.intervals import Speedup, seed_latency_ratio, speedup_over_seeds, speedup_text
from edgecomp.report.recipe_contrast import same_baseline
from edgecomp.report.waterfall import points_difference, titled_table
from edgecomp.units import ratio

METRIC = "top1"
SPARSITIES = (0.25, 0.5, 0.75)
# The paper's two smallest models, where it found INT8's largest accuracy loss.
SMALLEST = ("mobilenetv3_small_100", "mobilenetv3_large_100")
KD_STUDENT = "mobilenetv3_small_100"
# The compressors whose records make the paper's grid: findings are written only where all of them ran.
GRID = ("ptq_fp16", "ptq_int8", "prune_unstructured", "kd")
# The compression time ranking the paper found (slowest first), by method; pruning's sparsities are one method.
PAPER_TIME_RANKING = ("prune_unstructured", "kd", "ptq_int8", "ptq_fp16")
METHOD_NAMES = {"prune_unstructured": "pruning", "kd": "KD", "ptq_int8": "INT8", "ptq_fp16": "FP16"}


@dataclass(frozen=True)
class Finding:
    """One of the paper's findings: what it says (`claim`), its figure (`paper`), edgecomp's (`measured`, with
    intervals) and whether edgecomp reproduced it (`reproduced`: yes, no, partly, or why it cannot say)."""

    claim: str
    paper: str
    measured: str
    reproduced: str


Records = dict[str, dict[Any, dict[str, Any]]]  # model -> seed -> record


# --------------------------------------------------------------------------------------------------- selecting


def _latest_by_model_and_seed(records: Sequence[dict[str, Any]]) -> Records:
    """model -> seed -> the latest record (records are in file order, so a rerun replaces an earlier one)."""
    out: Records = {}
    for record in records:
        out.setdefault(record["model"], {})[record["seed"]] = record
    return out


def _compressed(records: Sequence[dict[str, Any]], compressor: str, **settings: Any) -> Records:
    """The compress.py records of `compressor` whose `compression` settings equal `settings`, by model and seed."""

    def matches(record: dict[str, Any]) -> bool:
        compression = record.get("compression") or {}
        return all(_same(compression.get(key), value) for key, value in settings.items())

    return _latest_by_model_and_seed(
        [r for r in records if r.get("compressor") == compressor and isinstance(r.get("baseline"), dict) and matches(r)]
    )


def _same(value: Any, expected: Any) -> bool:
    if isinstance(value, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(value, expected)
    return value == expected


def _kd_students(records: Sequence[dict[str, Any]]) -> Records:
    """compressor=kd_into_mobilenetv3_small's records: KD whose student is another network than the teacher, by
    teacher (the run's model) and seed."""
    return _latest_by_model_and_seed(
        [r for r in _flatten(_compressed(records, "kd")) if (r.get("compression") or {}).get("student")]
    )


def _flatten(by_model: Records) -> list[dict[str, Any]]:
    return [record for seeds in by_model.values() for record in seeds.values()]


# --------------------------------------------------------------------------------------------------- statistics


def _change_vs_baseline(by_seed: dict[Any, dict[str, Any]]) -> PairedDifference | None:
    """The records' top-1 minus their own baselines', in points, over the seeds."""
    return paired_difference([points_difference(r, r["baseline"], METRIC) for r in by_seed.values()])


def _changes_vs(by_model: Records, against: Records) -> dict[str, PairedDifference]:
    """Per model, its records' top-1 minus `against`'s of the same model and seed, over the seeds where both
    started from the same trained baseline; models without such a seed are left out."""
    changes = {}
    for model, by_seed in by_model.items():
        control = against.get(model, {})
        difference = paired_difference(
            [
                points_difference(record, control[seed], METRIC)
                for seed, record in by_seed.items()
                if seed in control and same_baseline(record, control[seed])
            ]
        )
        if difference is not None:
            changes[model] = difference
    return changes


def _speedup(by_seed: dict[Any, dict[str, Any]]) -> Speedup | None:
    """Baseline / compressed latency over the seeds (> 1 faster), from each record's paired timing rounds."""
    return speedup_over_seeds([seed_latency_ratio(record, record["baseline"]) for record in by_seed.values()])


def _difference(difference: PairedDifference) -> str:
    """`-1.2 [-2.0, -0.4]`: points, the interval over seeds (none for one seed)."""
    if difference.ci95 is None:
        return f"{difference.mean:+.1f} (1 seed)"
    low, high = difference.ci95
    return f"{difference.mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def _verdict_counts(verdicts: Sequence[str]) -> str:
    """`2 worse, 4 same within noise` over the models (one seed: no verdict)."""
    counts = [(verdicts.count(v), v) for v in (BETTER, SAME, WORSE)]
    text = ", ".join(f"{n} {v}" for n, v in counts if n)
    return text or "one seed: no verdict"


ONE_SEED_ONLY = "cannot tell: one seed, no interval"


def _one_seed(changes: dict[str, PairedDifference]) -> bool:
    """No change has an interval over seeds: a verdict on them would be a guess."""
    return all(d.ci95 is None for d in changes.values())


def _by_model(
    by_model: Records, statistic: Callable[[dict[Any, dict[str, Any]]], PairedDifference | None]
) -> dict[str, PairedDifference]:
    return {model: d for model, seeds in by_model.items() if (d := statistic(seeds)) is not None}


def _extremes(differences: dict[str, PairedDifference]) -> str:
    """The range of the per-model changes, with the model at each end and its interval."""
    low = min(differences, key=lambda m: differences[m].mean)
    high = max(differences, key=lambda m: differences[m].mean)
    if low == high:
        return f"{low} {_difference(differences[low])}"
    return f"{low} {_difference(differences[low])} to {high} {_difference(differences[high])}"


def _summary(differences: dict[str, PairedDifference], over: str = "models") -> str:
    verdicts = [d.verdict for d in differences.values()]
    return f"{_extremes(differences)} pts over {len(differences)} {over} ({_verdict_counts(verdicts)})"


def _size_ratio(by_model: Records, key: str) -> float | None:
    """Baseline / compressed `key` (size_bytes, gzip_bytes) as the geometric mean over models and seeds (> 1:
    smaller)."""
    ratios = [ratio(r["baseline"].get(key), r.get(key)) for r in _flatten(by_model)]
    known = [value for value in ratios if value is not None and value > 0]
    return statistics.geometric_mean(known) if known else None


def _times(by_model: Records) -> list[float]:
    return [
        float(t)
        for r in _flatten(by_model)
        if isinstance(t := (r.get("compression") or {}).get("time_s"), (int, float))
    ]


# --------------------------------------------------------------------------------------------------- findings


def _fp16_accuracy(records: Sequence[dict[str, Any]]) -> Finding | None:
    changes = _by_model(_compressed(records, "ptq_fp16"), _change_vs_baseline)
    if not changes:
        return None
    worse = [m for m, d in changes.items() if d.verdict == WORSE]
    return Finding(
        "FP16 loses no accuracy",
        "0.003 % lost on average",
        f"Δ top-1 {_summary(changes)}",
        ONE_SEED_ONLY if _one_seed(changes) else "yes" if not worse else f"no: worse on {', '.join(worse)}",
    )


def _int8_accuracy(records: Sequence[dict[str, Any]]) -> Finding | None:
    changes = _by_model(_compressed(records, "ptq_int8"), _change_vs_baseline)
    if not changes:
        return None
    largest = min(changes, key=lambda m: changes[m].mean)
    losses = [m for m, d in changes.items() if d.verdict == WORSE]
    if _one_seed(changes):
        reproduced = ONE_SEED_ONLY
    elif largest in SMALLEST and largest in losses:
        reproduced = "yes"
    elif not losses:
        reproduced = "no: no model lost accuracy beyond the noise"
    else:
        reproduced = f"partly: it varies, largest on {largest}"
    return Finding(
        "INT8's accuracy loss varies by model, largest on the smallest",
        "MobileNetV3-Small -20.9, -Large -29.2; EfficientNets and DenseNets -6.4 to -7.6 pts",
        f"Δ top-1 {_summary(changes)}; largest loss: {largest}",
        reproduced,
    )


def _int8_latency(records: Sequence[dict[str, Any]]) -> list[Finding]:
    """One finding per CPU the INT8 files were timed on (the record's `hardware`, which names its INT8
    instructions)."""
    int8 = _compressed(records, "ptq_int8")
    by_hardware: dict[str, Records] = {}
    for record in _flatten(int8):
        by_hardware.setdefault(record.get("hardware") or "unknown", {}).setdefault(record["model"], {})[
            record["seed"]
        ] = record
    findings = []
    for hardware, by_model in sorted(by_hardware.items()):
        speedups = {model: s for model, seeds in by_model.items() if (s := _speedup(seeds)) is not None}
        if not speedups:
            continue
        slowest = min(speedups, key=lambda m: speedups[m].value)
        fastest = max(speedups, key=lambda m: speedups[m].value)
        verdicts = [s.verdict or "" for s in speedups.values()]
        counts = ", ".join(
            f"{verdicts.count(v)} {v}" for v in ("faster", "same within noise", "slower") if v in verdicts
        )
        faster, slower = verdicts.count("faster"), verdicts.count("slower")
        if faster == len(verdicts):
            reproduced = "no: faster on every model (both on the CPU)"
        elif slower == len(verdicts):
            reproduced = "yes: slower on every model"
        else:
            reproduced = f"partly: faster on {faster}, slower on {slower} of {len(verdicts)} models"
        findings.append(
            Finding(
                f"INT8 latency on {hardware}",
                "INT8 slower than the base (3.7-13.8x for the DenseNets): TF Lite ran it on the board's CPU, the base "
                "on its GPU",
                f"speed-up over FP32 ONNX Runtime {speedup_text(speedups[slowest], seed_note=False)} ({slowest}) to "
                f"{speedup_text(speedups[fastest], seed_note=False)} ({fastest}); {counts or 'one seed: no verdict'}",
                reproduced,
            )
        )
    return findings


def _pruning_size_and_latency(records: Sequence[dict[str, Any]]) -> Finding | None:
    cells, latency_cells, consistent = [], [], True
    for sparsity in SPARSITIES:
        pruned = _compressed(records, "prune_unstructured", sparsity=sparsity)
        gzip, size = _size_ratio(pruned, "gzip_bytes"), _size_ratio(pruned, "size_bytes")
        if gzip is None or size is None:
            continue
        speedups = [s for seeds in pruned.values() if (s := _speedup(seeds)) is not None]
        cells.append(f"{sparsity:.0%}: gzip {gzip:.2f}x, file {size:.2f}x smaller")
        if speedups:
            values = [s.value for s in speedups]
            same = sum(s.verdict == SAME for s in speedups)
            latency_cells.append(
                f"{sparsity:.0%}: {min(values):.2f}x-{max(values):.2f}x, {same} of {len(speedups)} models same within "
                "noise"
            )
            consistent &= same >= len(speedups) / 2
        consistent &= gzip > 1 and math.isclose(size, 1.0, abs_tol=0.02)
    if not cells:
        return None
    return Finding(
        "Unstructured pruning shrinks the gzip size, not the file or the latency",
        "gzip 1.68x / 2.2x / 3.36x smaller at 25 / 50 / 75 %; SavedModel about the same; latency changes "
        "insignificant and inconsistent",
        "; ".join(cells) + ("; speed-up " + "; ".join(latency_cells) if latency_cells else ""),
        "yes" if consistent else "partly",
    )


def _pruning_accuracy(records: Sequence[dict[str, Any]]) -> Finding | None:
    control = _compressed(records, "finetune_control")
    cells, means, one_seed = [], [], True
    for sparsity in SPARSITIES:
        pruned = _compressed(records, "prune_unstructured", sparsity=sparsity)
        if changes := _changes_vs(pruned, control):
            cells.append(f"{sparsity:.0%}: {_summary(changes)}")
            means.append(statistics.fmean(d.mean for d in changes.values()))
            one_seed &= _one_seed(changes)
    if not cells:
        return None
    if one_seed:
        reproduced = ONE_SEED_ONLY
    elif len(means) < len(SPARSITIES):
        reproduced = "cannot tell: not every sparsity ran"
    elif means[0] >= means[1] >= means[2] and means[2] < 0:
        reproduced = "yes"
    else:
        reproduced = "no: it does not fall with the sparsity"
    return Finding(
        "Accuracy falls as the sparsity rises (edgecomp: against the same epochs of plain fine-tuning)",
        "25 %: at most -3.2 pts; 50 %: -2.1 to -6.3 on the three largest, -13 to -40 on the others; 75 %: most "
        "models near chance (against the base, no control)",
        "Δ top-1 vs finetune_control, " + "; ".join(cells),
        reproduced,
    )


def _kd_against_control(records: Sequence[dict[str, Any]]) -> Finding | None:
    changes = _changes_vs(_kd_students(records), _compressed(records, "kd_control"))  # by teacher
    if not changes:
        return None
    better = sum(d.verdict == BETTER for d in changes.values())
    return Finding(
        f"KD into {KD_STUDENT} against training it alone for the same epochs",
        "not measured (its 'scratch' student was the base model, trained longer: next line)",
        f"Δ top-1 by teacher, {_summary(changes, 'teachers')}",
        ONE_SEED_ONLY
        if _one_seed(changes)
        else f"KD helped with {better} of {len(changes)} teachers"
        if better
        else "KD helped with no teacher",
    )


def _kd_against_scratch(records: Sequence[dict[str, Any]]) -> Finding | None:
    students = _kd_students(records)
    scratch = _latest_by_model_and_seed(
        [r for r in records if r.get("model") == KD_STUDENT and r.get("compressor") in (None, "none")]
    ).get(KD_STUDENT, {})
    # The student alone is the converged baseline of the same seed (compressor=none of the student model).
    per_teacher = {
        teacher: paired_difference([points_difference(r, scratch[s], METRIC) for s, r in seeds.items() if s in scratch])
        for teacher, seeds in students.items()
    }
    changes = {teacher: d for teacher, d in per_teacher.items() if d is not None}
    if not changes:
        return None
    worse = sum(d.verdict == WORSE for d in changes.values())
    return Finding(
        f"KD's student against {KD_STUDENT} trained alone (the paper's 'scratch'; edgecomp: to convergence)",
        "78.2-78.5 % against 81.4 %: -3.0 pts",
        f"Δ top-1 by teacher, {_summary(changes, 'teachers')}",
        ONE_SEED_ONLY if _one_seed(changes) else "yes" if worse == len(changes) else "partly" if worse else "no",
    )


def _ptq_size(records: Sequence[dict[str, Any]]) -> Finding | None:
    fp16, int8 = (_size_ratio(_compressed(records, name), "size_bytes") for name in ("ptq_fp16", "ptq_int8"))
    if fp16 is None or int8 is None:
        return None
    return Finding(
        "PTQ shrinks the file: FP16 about 2x, INT8 about 4x",
        "FP16 2.75x, INT8 4.72x smaller on average (TF Lite)",
        f"FP16 {fp16:.2f}x, INT8 {int8:.2f}x smaller (ONNX, geometric mean over models and seeds)",
        "yes" if 1.8 <= fp16 < int8 else "no",
    )


def _compression_time(records: Sequence[dict[str, Any]]) -> Finding | None:
    """The methods by their mean compression time, slowest first, and on how many models (each method's mean over
    its seeds; pruning's sparsities together) the paper's order holds: the time is mostly the model's, so an
    interval over models would say nothing."""
    by_method = {method: _compressed(records, method) for method in PAPER_TIME_RANKING} | {"kd": _kd_students(records)}
    by_method = {method: by_model for method, by_model in by_method.items() if _times(by_model)}
    if len(by_method) < 2:
        return None
    overall = {method: statistics.fmean(_times(by_model)) for method, by_model in by_method.items()}
    ranking = sorted(overall, key=lambda method: -overall[method])
    models = sorted({model for by_model in by_method.values() for model in by_model})
    holds = 0
    for model in models:
        means = {
            m: statistics.fmean(t)
            for m, by_model in by_method.items()
            if (t := _times({model: by_model.get(model, {})}))
        }
        holds += sorted(means, key=lambda method: -means[method]) == [m for m in PAPER_TIME_RANKING if m in means]
    text = " > ".join(f"{METHOD_NAMES[method]} {overall[method]:.0f} s" for method in ranking)
    paper = [method for method in PAPER_TIME_RANKING if method in by_method]
    return Finding(
        "Compression time: pruning slowest, KD between, PTQ fastest (FP16 before INT8)",
        "pruning 2.6-8x FP16's; KD 25-38 % of pruning's; FP16 20-70 % faster than INT8",
        f"{text} (mean over models and seeds); the paper's order on {holds} of {len(models)} models",
        "yes"
        if holds == len(models)
        else "partly"
        if holds or ranking == paper
        else f"no: {' > '.join(METHOD_NAMES[m] for m in ranking)}",
    )


def paper_findings(records: Sequence[dict[str, Any]]) -> list[Finding]:
    """The findings the classification records of the benchmark paper's grid allow, in the paper's order; none
    where the records hold no such grid (each of GRID's compressors with at least one record)."""
    records = [r for r in records if r.get("task") == "classification" and not r.get("recipe")]
    if not all(any(r.get("compressor") == name for r in records) for name in GRID):
        return []
    findings = [
        _fp16_accuracy(records),
        _int8_accuracy(records),
        *_int8_latency(records),
        _ptq_size(records),
        _pruning_size_and_latency(records),
        _pruning_accuracy(records),
        _kd_against_control(records),
        _kd_against_scratch(records),
        _compression_time(records),
    ]
    return [finding for finding in findings if finding is not None]


def findings_table(records: Sequence[dict[str, Any]]) -> str | None:
    """The Markdown table finding | paper | edgecomp | reproduced?, None where paper_findings has none."""
    findings = paper_findings(records)
    if not findings:
        return None
    seeds = sorted({r["seed"] for r in records if isinstance(r.get("baseline"), dict)}, key=str)
    title = (
        "The benchmark paper's findings against these records (seeds "
        f"{', '.join(map(str, seeds))}; changes paired by seed: mean [t 95 % interval] in points of top-1; verdicts "
        "per model over the seeds)"
    )
    lines = [[f.claim, f.paper, f.measured, f.reproduced] for f in findings]
    return titled_table(title, ["finding", "paper", "edgecomp", "reproduced?"], lines, text_columns=4)
