"""FastNAS under FLOPs budgets against FastNAS under latency budgets set at the latency each FLOPs search reached:
each subnet's FLOPs, latency on the device's runtime and mAP, with their intervals, and a verdict per budget.

    python -m benchmarks.fastnas_latency          # YOLOv8n at 320 px on synthetic_sod, FLOPs budgets 60, 70, 80 %
    python -m benchmarks.fastnas_latency --flops 66% --rankings both drop
    python -m benchmarks.fastnas_latency --flops 70% 80%   # adds budgets to --results' runs, reusing their search
    python -m benchmarks.fastnas_latency --from-records    # every run --results holds, timed and judged together
    python -m benchmarks.fastnas_latency --image-size 96 --epochs 1 --fine-tune-epochs 1 --channel-ratios 0.25 1.0

Per FLOPs budget (`--flops`): `compress.py experiment=fastnas_yolo compressor.constraint=flops compressor.flops=B`;
its ONNX file and the baseline's are timed against each other right after it (edgecomp's paired rounds:
edgecomp.evaluate.paired_latency), and the ratio reached becomes the budget of the latency searches
(`compressor.constraint=latency compressor.latency=<ratio>`, one run per `--rankings` entry; `both`, the default
search, bisects by score lost per ms saved and in ModelOpt's order and keeps the finalist that scores higher). A
budget that the search space's smallest subnet misses is refused by the latency run, and printed. All runs share the
trained baseline (trained once, cached under --results) and one search checkpoint (the per-group score drops, which
do not depend on the budget: the first run's, or an earlier invocation's on the same --results with the same search
settings), so the searches differ in their constraint and ranking alone.

After the runs every file, the baseline's included, is timed against the others in `--rounds` alternating rounds
(one session at a time): each subnet's latency ratio to the baseline, and each latency subnet's to the FLOPs subnet
of its budget, with the t interval of the per-round ratios and its verdict. mAP comes with the bootstrap interval
over the evaluation images that each record holds (`metrics_ci95`); the difference of two subnets' mAP gets the
interval sqrt(h1^2 + h2^2) of the two half-widths (as if independent: both are scored on the same images, so it is
conservative). Per budget the latency search is `ahead` (more mAP at no more latency, or less latency at no less
mAP), `behind` (the reverse), `mixed` (faster and worse, or slower and better) or `same within noise`. The points go
into `fastnas_latency.png` (mAP against latency ratio, both with their intervals) under --results.

What it shows: FastNAS narrows the groups whose score drops least, whatever they cost; under a FLOPs budget that is
what ModelOpt counts, under a latency budget what the runtime measures. The report's FLOPs search cut YOLOv8m's FLOPs
by 34 % and its GPU latency by 19.6 %: latency cut / FLOPs cut = 0.58.
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks.timing import add_latency_arguments, protocol_description, time_sides
from edgecomp.config import resolved_config
from edgecomp.errors import ConfigError
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.paired_latency import Side
from edgecomp.evaluate.record import read_records
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.uncertainty import FASTER, SAME, SLOWER, RatioInterval
from edgecomp.pipelines import compress
from edgecomp.pipelines.common import Job

CONF = Path(__file__).resolve().parents[1] / "conf"
BUDGET_SLACK = 0.05  # the target: the latency search's subnet within 5 % of its budget
PLOT = "fastnas_latency.png"


def compose_run(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="compress"):
        return compose(config_name="compress", overrides=overrides)


def share_search(first_record: dict, cfg) -> None:
    """Put `first_record`'s search checkpoint (the baseline's per-group score drops) where `cfg`'s search looks for
    its own."""
    checkpoint = Path(first_record["fastnas"]["search"]["checkpoint"])
    work_dir = Job(cfg, resolved_config(cfg), logger=None).artifacts_dir
    if checkpoint.is_file() and not (work_dir / checkpoint.name).exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint, work_dir / checkpoint.name)


def row(name: str, record: dict, budget_of: str) -> dict:
    """What the table shows of one compress.py record: the pruned side, its ratios to its own baseline, its mAP's
    bootstrap interval, and which FLOPs budget it belongs to."""
    baseline = record["baseline"]
    searched = record["fastnas"].get("latency") or {}
    return {
        "run": name,
        "flops_budget": budget_of,
        "constraint": record["compression"]["constraint"],
        "budget": record["compression"][record["compression"]["constraint"]],
        "flops": record["flops"],
        "flops_ratio": record["flops"] / baseline["flops"],
        "map": record["metrics"]["map"],
        "map_ci95": (record.get("metrics_ci95") or {}).get("map"),
        "baseline_map": baseline["metrics"]["map"],
        # the run's own paired timing against its baseline, and the latency search's timing of its subnet
        "record_ratio": record["vs_baseline"]["latency_ratio"],
        "search_ratio": searched.get("subnet_share"),
        "search_budget": searched.get("share"),
        "subnets_measured": searched.get("subnets_measured"),
        "search_time_s": record["fastnas"]["search"]["time_s"],
        "artifact": record["artifact"],
        "baseline_artifact": baseline["artifact"],
    }


def rows_from_records(path: Path) -> list[dict]:
    """The rows of the FastNAS records in `path`, in the order they were written: each latency search belongs to
    the FLOPs search before it (the order `main` runs them in)."""
    rows, budget_of = [], None
    for record in read_records(path):
        if record.get("compressor") != "fastnas":
            continue
        constraint = record["compression"]["constraint"]
        if constraint == "flops":
            budget_of = str(record["compression"]["flops"])
            rows.append(row(f"flops {budget_of}", record, budget_of))
        elif budget_of is not None:
            ranking = record["compression"].get("latency_ranking", "both")
            rows.append(row(f"latency/{ranking} {budget_of}", record, budget_of))
    if not rows:
        raise SystemExit(f"{path}: no FastNAS records to judge")
    return rows


BUDGET_KEYS = ("constraint", "flops", "latency", "latency_ranking")  # what the runs of one benchmark differ in


def earlier_search(path: Path, cfg) -> dict | None:
    """A FastNAS record in `path` whose search checkpoint still exists and whose search settings are `cfg`'s but for
    the budget: a budget added to an earlier run (`--flops 70% 80%` after `--flops 60%`) reuses its per-group score
    drops instead of measuring them again (about 9 minutes for YOLOv8n at 320 px). The checkpoint is named after the
    baseline's weights, so a run on another baseline does not find it and searches anew."""
    if not path.is_file():
        return None
    wanted = search_settings(OmegaConf.to_container(cfg.compressor, resolve=True))
    for record in read_records(path):
        checkpoint = ((record.get("fastnas") or {}).get("search") or {}).get("checkpoint")
        compressor = (record.get("config") or {}).get("compressor") or {}
        if checkpoint and Path(checkpoint).is_file() and search_settings(compressor) == wanted:
            return record
    return None


def search_settings(compressor: dict) -> dict:
    return {key: value for key, value in compressor.items() if key not in BUDGET_KEYS}


def paired_ratios(files: dict[str, str], pairs: list[tuple[str, str]], args: argparse.Namespace) -> dict:
    """The files timed against each other in `args.rounds` alternating rounds (one session at a time); for each
    (side, reference) of `pairs`, side's ms over reference's with its interval and verdict."""
    names = list(files)
    images = torch.rand(args.images, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0))
    timing = time_sides([Side(OnnxRuntime(), files[name], name) for name in names], images, args)
    return {pair: timing.ratio(names.index(pair[0]), names.index(pair[1])) for pair in pairs}


def map_difference(a: dict, b: dict) -> tuple[float, tuple[float, float] | None]:
    """a's mAP minus b's, and its interval from the two bootstrap intervals (half-widths added in quadrature)."""
    difference = a["map"] - b["map"]
    if not a["map_ci95"] or not b["map_ci95"]:
        return difference, None
    half = math.hypot(*((ci[1] - ci[0]) / 2 for ci in (a["map_ci95"], b["map_ci95"])))
    return difference, (difference - half, difference + half)


def verdict(latency: RatioInterval, accuracy: tuple[float, float] | None) -> str:
    """The latency search's subnet against the FLOPs search's of the same budget."""
    better = accuracy is not None and accuracy[0] > 0
    worse = accuracy is not None and accuracy[1] < 0
    if (better and latency.verdict != SLOWER) or (latency.verdict == FASTER and not worse):
        return "ahead"
    if (worse and latency.verdict != FASTER) or (latency.verdict == SLOWER and not better):
        return "behind"
    return "mixed" if better or worse else SAME


def plot(rows: list[dict], path: Path) -> None:
    """mAP against latency ratio to the baseline, both with their intervals: the FLOPs and the latency searches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for constraint, marker in (("flops", "o"), ("latency", "s")):
        chosen = [r for r in rows if r["constraint"] == constraint]
        if not chosen:
            continue
        x = [r["alternated"].ratio for r in chosen]
        y = [100 * r["map"] for r in chosen]
        xerr = [[r["alternated"].ratio - r["alternated"].ci95[0] for r in chosen],
                [r["alternated"].ci95[1] - r["alternated"].ratio for r in chosen]]  # fmt: skip
        yerr = [[100 * (r["map"] - (r["map_ci95"] or [r["map"]] * 2)[0]) for r in chosen],
                [100 * ((r["map_ci95"] or [r["map"]] * 2)[1] - r["map"]) for r in chosen]]  # fmt: skip
        axes.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, capsize=3, label=f"{constraint} search")
        for r, xi, yi in zip(chosen, x, y, strict=True):
            axes.annotate(r["flops_budget"], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel("latency / baseline (paired rounds, 95 % interval)")
    axes.set_ylabel("mAP50-95 (%; bootstrap 95 % interval)")
    axes.set_title("FastNAS: FLOPs-constrained vs latency-constrained subnets, by FLOPs budget")
    axes.legend()
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def _interval(ratio: RatioInterval) -> str:
    return f"{ratio.ratio:.3f} [{ratio.ci95[0]:.3f}, {ratio.ci95[1]:.3f}]"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the baseline (fastnas_yolo: 20)")
    parser.add_argument("--fine-tune-epochs", type=int, default=10, help="of each pruned subnet (fastnas_yolo: 10)")
    parser.add_argument("--flops", nargs="+", default=["60%", "70%", "80%"], help="the FLOPs searches' budgets")
    parser.add_argument(
        "--channel-ratios", nargs="+", type=float, default=None, help="e.g. 0.25 1.0 (default: ModelOpt's 0.05 steps)"
    )
    parser.add_argument(
        "--rankings", nargs="+", default=["both"], help="the latency searches' compressor.latency_ranking, a run each"
    )
    add_latency_arguments(parser, images=50, runs=10)
    parser.add_argument("--results", default="results/benchmarks/fastnas_latency")
    parser.add_argument("--data", default="data", help="where the generated dataset is cached")
    parser.add_argument(
        "--from-records",
        action="store_true",
        help="run no search: time and judge the subnets whose records --results already holds (a run cut short)",
    )
    args = parser.parse_args(argv)
    common = [
        "experiment=fastnas_yolo",
        "device=cpu",
        f"device.threads={args.threads}",
        f"dataset.image_size={args.image_size}",
        f"trainer.max_epochs={args.epochs}",
        f"compressor.epochs={args.fine_tune_epochs}",
        "trainer.enable_progress_bar=false",
        f"paths.results={args.results}",
        f"paths.data={args.data}",
        "logger=none",
        "evaluate.bootstrap=1000",  # each subnet's mAP with its interval over the evaluation images
    ]
    if args.channel_ratios:
        common.append(f"compressor.channel_ratios=[{','.join(f'{r:g}' for r in args.channel_ratios)}]")

    rows: list[dict] = []
    refused: dict[str, str] = {}
    first_search = None
    if args.from_records:
        rows = rows_from_records(Path(args.results) / "records.jsonl")
    for flops in [] if args.from_records else args.flops:
        flops_cfg = compose_run([*common, "compressor.constraint=flops", f"compressor.flops={flops}"])
        first_search = first_search or earlier_search(Path(args.results) / "records.jsonl", flops_cfg)
        if first_search is not None:
            share_search(first_search, flops_cfg)
        flops_record = compress.run(flops_cfg)
        first_search = first_search or flops_record
        flops_row = row(f"flops {flops}", flops_record, flops)
        rows.append(flops_row)
        # The latency the FLOPs search reached, its file and the baseline's timed against each other now
        files = {"baseline": flops_row["baseline_artifact"], "flops": flops_row["artifact"]}
        reached = flops_row["reached"] = paired_ratios(files, [("flops", "baseline")], args)[("flops", "baseline")]
        if reached.ratio >= 1:
            refused[flops] = f"the FLOPs subnet is no faster than its baseline ({_interval(reached)}): no latency run"
            continue
        for ranking in args.rankings:
            latency_cfg = compose_run(
                [*common, "compressor.constraint=latency", f"compressor.latency={reached.ratio:.4f}"]
                + [f"compressor.latency_ranking={ranking}"]
            )
            share_search(first_search, latency_cfg)
            try:
                rows.append(row(f"latency/{ranking} {flops}", compress.run(latency_cfg), flops))
            except ConfigError as err:  # the search space's smallest subnet, as the search timed it, misses it
                refused[flops] = str(err)
                break

    # Every file against every other, in one paired timing: each subnet against the baseline, and each latency
    # search's subnet against the FLOPs search's of its budget.
    files = {"baseline": rows[0]["baseline_artifact"], **{r["run"]: r["artifact"] for r in rows}}
    flops_run = {r["flops_budget"]: r["run"] for r in rows if r["constraint"] == "flops"}
    pairs = [(r["run"], "baseline") for r in rows]
    pairs += [(r["run"], flops_run[r["flops_budget"]]) for r in rows if r["constraint"] == "latency"]
    ratios = paired_ratios(files, pairs, args)
    for r in rows:
        r["alternated"] = ratios[(r["run"], "baseline")]
        if r["constraint"] == "latency":
            r["vs_flops_subnet"] = ratios[(r["run"], flops_run[r["flops_budget"]])]
    plot(rows, Path(args.results) / PLOT)

    print(
        f"\nFastNAS, YOLOv8n at {args.image_size} px on synthetic_sod ({args.epochs}-epoch baseline, mAP50-95 "
        f"{rows[0]['baseline_map']:.4f}; {args.fine_tune_epochs} fine-tune epochs); device=cpu: {cpu_description()}, "
        f"ONNX Runtime; latency: every file against every other, {protocol_description(args)}; shown as each file's "
        "ratio to the baseline [95 % interval]"
    )
    print(f"{'run':<20}{'budget':>8}{'FLOPs':>8}{'latency / baseline':>26}{'mAP [95 % interval]':>28}{'subnets':>9}")
    for r in rows:
        ci = r["map_ci95"]
        accuracy = f"{r['map']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
        subnets = "-" if r["subnets_measured"] is None else str(r["subnets_measured"])
        print(
            f"{r['run']:<20}{r['budget']:>8}{r['flops_ratio']:>8.3f}{_interval(r['alternated']):>26}"
            f"{accuracy:>28}{subnets:>9}"
        )
    for r in rows:
        if r["constraint"] != "flops":
            continue
        cut = (1 - r["alternated"].ratio) / (1 - r["flops_ratio"])
        print(
            f"FLOPs search {r['flops_budget']}: latency cut / FLOPs cut = (1 - {r['alternated'].ratio:.3f}) / "
            f"(1 - {r['flops_ratio']:.3f}) = {cut:.2f} (the report's YOLOv8m on a GPU: 0.58)"
        )
    for flops, reason in refused.items():
        print(f"FLOPs budget {flops}: latency search refused: {reason}")
    flops_rows = {r["flops_budget"]: r for r in rows if r["constraint"] == "flops"}
    for r in rows:
        if r["constraint"] != "latency":
            continue
        against = flops_rows[r["flops_budget"]]
        difference, interval = map_difference(r, against)
        r["map_difference"], r["map_difference_ci95"] = difference, interval
        r["verdict"] = verdict(r["vs_flops_subnet"], interval)
        budget = r["search_budget"]
        within = r["alternated"].ci95[0] <= budget * (1 + BUDGET_SLACK)
        accuracy = f"{difference:+.4f}" + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "")
        print(
            f"{r['run']}: budget {budget:.3f}; latency vs the FLOPs subnet {_interval(r['vs_flops_subnet'])} "
            f"{r['vs_flops_subnet'].verdict}; mAP {accuracy}; {'within' if within else 'NOT within'} "
            f"{BUDGET_SLACK:.0%} of the budget: {r['verdict'].upper()}"
        )
    print(f"plot: {Path(args.results) / PLOT}")
    return rows


if __name__ == "__main__":
    main()
