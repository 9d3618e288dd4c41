"""The one-screen summary printed at the end of a run."""

from __future__ import annotations

from typing import Any

from edgecomp.units import si_text

METRICS_PER_ROW = 5


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    shown = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
    chunks = [shown[i : i + METRICS_PER_ROW] for i in range(0, len(shown), METRICS_PER_ROW)]
    return [("metrics" if i == 0 else "", "  ".join(chunk)) for i, chunk in enumerate(chunks)]


def format_summary(record: dict[str, Any], records_path: str, line: int, title: str) -> str:
    """Rows for what the record holds: a scored predictions file has metrics but no model, latency or size."""
    run = f"{record['dataset']} / seed {record['seed']}"
    if record.get("model"):
        run = f"{record['dataset']} / {record['model']} / compressor={record['compressor']} / seed {record['seed']}"
    rows = [("run", run), *_metric_rows(record["metrics"])]
    if record.get("latency_ms"):
        lat, runtime = record["latency_ms"], record["runtime"]
        interval = f" [{lat['ci95'][0]:.3f}, {lat['ci95'][1]:.3f}]" if lat.get("ci95") else ""
        passes = f"{lat['runs']} runs + {lat['warmup']} warm-up"
        if lat.get("rounds"):
            passes = f"{lat['runs']} runs in {lat['rounds']} paired rounds (+ {lat['warmup']} warm-up each)"
        rows += [
            (
                "latency",
                f"{lat['mean']:.3f} ms/image (std {lat['std']:.3f}, median {lat['median']:.3f}{interval}, "
                f"p90 {lat['p90']:.3f}); {passes} over {lat['images']} images",
            ),
            (
                "target",
                f"device={record['device']}: {runtime['runtime']} on {runtime['accelerator']}, {runtime['precision']}, "
                f"batch {runtime['batch_size']}, threads {runtime['threads']}",
            ),
            ("hardware", record["hardware"]),
        ]
    if record.get("params") is not None:
        _, h, w = record.get("input_size", (3, "?", "?"))
        rows.append(("model", f"{si_text(record['params'])} params, {si_text(record['flops'], 'FLOPs')}/image at {h}x{w}"))
    if record.get("size_bytes") is not None:
        rows.append(("size", f"{si_text(record['size_bytes'], 'B')} (gzip {si_text(record['gzip_bytes'], 'B')})"))
    artifact = record["artifact"]
    export = record.get("export_time_s")
    if export is not None:
        artifact += f" (exported in this run, {export:.1f} s)" if export > 0 else " (the export of an earlier run)"
    rows.append(("artifact", artifact))
    if record.get("checkpoint") and record["checkpoint"] != record["artifact"]:
        rows.append(("weights", record["checkpoint"]))
    if start := record.get("weights"):
        changed = [
            f"{label} {', '.join(start[key])}"
            for label, key in (("re-initialised", "reinitialised"), ("left at init", "left_at_init"))
            if start[key]
        ]
        rows.append(
            (
                "started",
                f"from {start['file']} ({start['format']}, sha256 {start['sha256']}): "
                f"{start['backbone_share']:.0%} of the backbone loaded" + "".join(f"; {c}" for c in changed),
            )
        )
    rows.append(("record", f"{records_path} line {line}"))
    width = max(len(k) for k, _ in rows)
    bar = "=" * 78
    body = "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
    return f"\n{bar}\n  edgecomp {title}\n{bar}\n{body}\n{bar}"
