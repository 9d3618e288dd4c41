from edgecomp.config import resolved_config, run_id
from tests.conftest import compose_config


def run_id_for(*overrides):
    return run_id(resolved_config(compose_config("train", list(overrides))))


def test_run_folder_follows_what_decides_the_weights():
    base = run_id_for()
    assert base.startswith("synthetic_cls-mobilenetv3_small_100-s0-")
    assert run_id_for("optimizer.optimizer.lr=0.1") != base
    assert run_id_for("trainer.max_epochs=3") != base
    assert run_id_for("dataset.image_size=32") != base
    assert run_id_for("seed=1") != base and run_id_for("seed=1").startswith("synthetic_cls-mobilenetv3_small_100-s1-")


def test_run_folder_ignores_what_only_changes_how_a_run_looks_or_where_it_is_measured():
    base = run_id_for()
    for override in (
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "dataset.datamodule.num_workers=0",
        "device=jetson_nano",
        "logger=wandb",
        "latency.images=10",
        "compressor=none",
    ):
        assert run_id_for(override) == base, override


def test_every_entry_config_composes_with_every_experiment():
    for name in ("train", "evaluate", "compress"):
        cfg = compose_config(
            name, ["experiment=smoke", "checkpoint=x.ckpt"] if name != "train" else ["experiment=smoke"]
        )
        assert cfg.trainer.max_epochs == 2 and cfg.latency.images == 16 and cfg.dataset.image_size == 32
