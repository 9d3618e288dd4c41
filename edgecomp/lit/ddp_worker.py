"""`python -m edgecomp.lit.ddp_worker SPEC`: one more rank of a DDP job (trainer=ddp), launched by the job's main
process (edgecomp.lit.distributed.WorkerLauncher) with LOCAL_RANK and the process group's address in its environment.

It runs the same pipeline function on the same composed config as the main process (both from SPEC), so every rank
goes through the job in lockstep; the pipeline stops it after the last training (distributed.release_workers).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from edgecomp.errors import EdgecompError
from edgecomp.lit.distributed import read_spec


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python -m edgecomp.lit.ddp_worker SPEC (got {argv[1:]})", file=sys.stderr)
        return 2
    entry, cfg = read_spec(argv[1])
    logging.basicConfig(
        level=logging.INFO, format=f"[rank {os.environ.get('LOCAL_RANK', '?')}] %(levelname)s %(name)s: %(message)s"
    )
    module, function = entry.split(":")
    try:
        getattr(importlib.import_module(module), function)(cfg)
    except EdgecompError as err:
        print(f"edgecomp: error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
