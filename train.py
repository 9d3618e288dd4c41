"""Train a model (baseline, teacher, or student from scratch), evaluate its checkpoint, append a record.

python train.py                                   # the default: synthetic_cls, mobilenetv3_small_100
python train.py model=efficientnet_b1 dataset=flowers102 dataset.root=/data/flowers102
python train.py -m seed=0,1,2 logger=wandb        # a sweep: one job and one W&B run per seed
python train.py --help                            # every config group and option
"""

import hydra

from edgecomp.cli import entry_point


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@entry_point
def main(cfg):
    from edgecomp.pipelines import train  # imported after Hydra has checked the command line

    return train.run(cfg)


if __name__ == "__main__":
    main()
