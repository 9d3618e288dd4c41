"""The compression's cost: its wall time and the memory the compression itself adds (the level before it is not
counted)."""

from __future__ import annotations

import torch

from tests.conftest import EAGER, read_jsonl, run_cli

MB = 10**6


def test_compress_records_what_the_compressor_allocated(tmp_path, data_dir):
    """A compressor that holds 250 MB for a moment: the record's rss_added_peak_bytes says so, whatever the process
    held before (the interpreter, the data, the baseline)."""
    from edgecomp.models.timm_classifier import create_classifier

    checkpoint = tmp_path / "baseline.pt"
    torch.save(create_classifier("mobilenetv3_small_100", num_classes=10).state_dict(), checkpoint)
    run_cli(
        "compress.py",
        "experiment=smoke",
        "compressor._target_=tests.helpers.allocating_compressor.AllocatingCompressor",
        "+compressor.megabytes=250",
        f"checkpoint={checkpoint}",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        "logger=none",
        EAGER,
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    compression = record["compression"]
    assert 245 * MB <= compression["rss_added_peak_bytes"] < 300 * MB
    assert compression["time_s"] >= 0.3  # it held the memory that long
    assert (compression["cuda_added_peak_bytes"] is None) == (not torch.cuda.is_available())


def test_a_process_the_compression_starts_counts_with_its_memory():
    """What a data-loader worker holds is the compression's too: a child started after the measurement began is
    found (the children are looked up every 0.25 s, their memory read every sample) while it holds 200 MB for 1 s."""
    import subprocess
    import sys

    from edgecomp.compress.cost import measure_cost

    holds = "import numpy as np, time; block = np.ones(200_000_000, dtype=np.uint8); time.sleep(1.0)"
    with measure_cost() as cost:
        subprocess.run([sys.executable, "-c", holds], check=True)
    assert 195 * MB <= cost.rss_added_peak_bytes < 260 * MB
