"""A job entry for tests/e2e/test_distributed.py: two ranks through edgecomp.lit.distributed, without a pipeline.

`run(cfg)` joins the job's process group (rank 0 launches rank 1 with `python -m edgecomp.lit.ddp_worker`, which
re-enters this function), does one `on_main` section, then releases the workers. Rank 1 lingers after its release,
so rank 0 only sees it gone if release_workers() waited for it. Rank 0 writes what it saw to `cfg.out`.
"""

import json
import os
import time
from pathlib import Path

import psutil
import torch.distributed as dist
from lightning.pytorch import Trainer

from edgecomp.lit import distributed


def run(cfg) -> None:
    trainer = Trainer(
        strategy=distributed.DDPStrategy(),
        accelerator="cpu",
        devices=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    distributed.join(trainer, "tests.helpers.ddp_entry:run", cfg)
    out = Path(cfg.out)
    world = distributed.world_size()

    def main_section() -> dict:
        with open(out.with_suffix(".sections"), "a") as log:
            log.write(f"{os.getpid()}\n")
        return {"chosen": 42}

    shared = distributed.on_main(main_section, "a test section", share=True)
    if not distributed.release_workers():
        out.with_suffix(".worker").write_text(json.dumps({"shared": shared}))
        time.sleep(float(cfg.linger_s))  # still alive for a while after its release
        return
    alive = [p.pid for p in psutil.Process().children() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    out.write_text(
        json.dumps(
            {
                "world": world,
                "shared": shared,
                "workers_alive": alive,
                "group_left": not dist.is_initialized(),
                "env_left": [k for k in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT") if k in os.environ],
            }
        )
    )


if __name__ == "__main__":
    import sys

    from omegaconf import OmegaConf

    run(OmegaConf.create({"out": sys.argv[1], "linger_s": float(sys.argv[2])}))
