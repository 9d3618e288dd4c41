"""Evaluate a saved checkpoint on a dataset and a target device, append a record.

python evaluate.py checkpoint=results/runs/<run>/checkpoints/last.ckpt
python evaluate.py experiment=smoke checkpoint=PATH device=jetson_nano
"""

import hydra

from edgecomp.cli import entry_point


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
@entry_point
def main(cfg):
    from edgecomp.pipelines import evaluate  # imported after Hydra has checked the command line

    return evaluate.run(cfg)


if __name__ == "__main__":
    main()
