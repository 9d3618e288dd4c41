"""Helpers over the composed Hydra config."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from edgecomp.errors import ConfigError

# What a folder of weight files may hold for a model, in the order they are looked for (timm and the Hugging Face
# hub write .safetensors and .bin, torchvision .pth, Ultralytics .pt).
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def weights_in(folder: str | None, name: str) -> str | None:
    """`${weights_in:${weights_dir},${.name}}`, every model config's `pretrained_file`: the weights file of model
    `name` in `folder` (<folder>/<name>.safetensors, .pth, .pt or .bin), or None without a folder. A folder without
    the model's file is a ConfigError naming the files looked for, raised when the config is resolved: before any
    work."""
    if folder is None:
        return None
    candidates = [Path(folder).expanduser() / f"{name}{suffix}" for suffix in WEIGHT_FILE_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(
        f"weights_dir={folder} holds no weights file for model {name}: looked for "
        f"{', '.join(candidate.name for candidate in candidates)}"
    )


OmegaConf.register_new_resolver("weights_in", weights_in, replace=True)

# The keys that decide what a training run produces. Two configs equal on these train the same model, so
# they share a run folder: that is what `resume=true` finds, and what a compression sweep reuses.
TRAINING_KEYS = ("task", "dataset", "model", "trainer", "optimizer", "seed", "convergence")
# Training keys that name a run only where they are set: a run without them keeps the folder it had before they
# existed (a baseline trained for a fixed budget is still found by its old name).
UNSET_KEYS_LEFT_OUT = ("convergence",)
# Keys under those that change how a run looks, not what it learns (the data order and augmentation do not
# depend on the worker count: edgecomp.data.sampling). Changing them must not orphan a trained baseline.
PRESENTATION_KEYS = (
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "dataset.datamodule.num_workers",
    "dataset.evaluator",
    "dataset.latency_images",
    "dataset.convergence_metric",  # what convergence=plateau watches: hashed as the `convergence` key's own
)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data, every interpolation resolved.

    Raises omegaconf.MissingMandatoryValue for any `???` left unset: called first by every entry point, so a
    missing required value stops the run before any work starts.
    """
    # A DictConfig converts to a dict, keyed by strings (the YAML mappings' keys).
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))


def config_hash(config: dict[str, Any], keys: tuple[str, ...] = TRAINING_KEYS, length: int = 10) -> str:
    subset = copy.deepcopy(
        {key: config.get(key) for key in keys if not (key in UNSET_KEYS_LEFT_OUT and config.get(key) is None)}
    )
    for dotted in PRESENTATION_KEYS:
        *parents, leaf = dotted.split(".")
        node: dict[str, Any] | None = subset
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    blob = json.dumps(subset, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def run_id(config: dict[str, Any]) -> str:
    """A readable, unique name for the training run this config describes."""
    return f"{config['dataset']['name']}-{config['model']['name']}-s{config['seed']}-{config_hash(config)}"


def build(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, except that an EdgecompError raised while building comes out as itself.

    Hydra wraps every exception from a `_target_` in an InstantiationException; for bad input (a missing
    dataset root, no GPU for device=cuda) the user should see our message, not a wrapped traceback.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from edgecomp.errors import EdgecompError

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, EdgecompError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
