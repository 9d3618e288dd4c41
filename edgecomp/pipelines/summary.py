"""The one-screen summary printed at the end of a run."""

from __future__ import annotations

from typing import Any


def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def format_summary(record: dict[str, Any], records_path: str, line: int, title: str) -> str:
    lat = record["latency_ms"]
    run = record["runtime"]
    metrics = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record["metrics"].items())
    _, h, w = record.get("input_size", (3, "?", "?"))
    rows = [
        ("run", f"{record['dataset']} / {record['model']} / compressor={record['compressor']} / seed {record['seed']}"),
        ("metrics", metrics),
        (
            "latency",
            f"{lat['mean']:.3f} ms/image (std {lat['std']:.3f}, median {lat['median']:.3f}, p90 {lat['p90']:.3f}); "
            f"{lat['runs']} runs + {lat['warmup']} warm-up over {lat['images']} images",
        ),
        (
            "target",
            f"device={record['device']}: {run['runtime']} on {run['accelerator']}, {run['precision']}, "
            f"batch {run['batch_size']}, threads {run['threads']}",
        ),
        ("hardware", record["hardware"]),
        ("model", f"{_si(record['params'])} params, {_si(record['flops'], 'FLOPs')}/image at {h}x{w}"),
        ("size", f"{_si(record['size_bytes'], 'B')} (gzip {_si(record['gzip_bytes'], 'B')})"),
        ("artifact", record["artifact"]),
        ("record", f"{records_path} line {line}"),
    ]
    width = max(len(k) for k, _ in rows)
    bar = "=" * 78
    body = "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
    return f"\n{bar}\n  edgecomp {title}\n{bar}\n{body}\n{bar}"
