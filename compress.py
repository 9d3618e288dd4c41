"""Apply one compressor, or a recipe of them, to a trained model; evaluate on the device; append the records.

python compress.py                                # compressor=none: the baseline, trained if need be
python compress.py checkpoint=results/runs/<run>/checkpoints/last.ckpt compressor=ptq_int8
python compress.py recipe=prune_kd_int8           # stages in order, one record per stage and the waterfall
"""

import hydra

from edgecomp.cli import entry_point


@hydra.main(config_path="conf", config_name="compress", version_base="1.3")
@entry_point
def main(cfg):
    from edgecomp.pipelines import compress  # imported after Hydra has checked the command line

    return compress.run(cfg)


if __name__ == "__main__":
    main()
