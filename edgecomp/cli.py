"""What the entry points share, kept free of heavy imports so Hydra rejects a bad command line at once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import InterpolationKeyError, InterpolationResolutionError, MissingMandatoryValue

from edgecomp.config import resolved_config
from edgecomp.errors import EdgecompError


def entry_point(run: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a task function for @hydra.main: a missing required value fails before anything is imported or
    built, and bad input (an EdgecompError) ends the job with its message alone. With an `objective` in the config
    it returns the objective's value of the run's record (what Hydra's Optuna sweeper optimises)."""

    @wraps(run)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            resolved_config(cfg)  # any `???` left unset stops here, before anything is built
        except MissingMandatoryValue as err:
            key = err.full_key
            print(
                f"edgecomp: error: Missing mandatory value: {key}: set it on the command line ({key}=...)",
                file=sys.stderr,
            )
            sys.exit(2)
        except InterpolationKeyError as err:
            print(f"edgecomp: error: {_unknown_reference(cfg, err)}", file=sys.stderr)
            sys.exit(2)
        except InterpolationResolutionError as err:
            refusal = _edgecomp_cause(err)  # a resolver of edgecomp's refusing a value (weights_in)
            if refusal is None:
                raise
            print(f"edgecomp: error: {refusal}", file=sys.stderr)
            sys.exit(2)
        try:
            result = run(cfg)
            if cfg.get("objective"):  # a search (hparams_search=...): what its sweeper optimises, from the record
                from edgecomp.tracking.sweep import objective_of

                return objective_of(cfg, result)
            return result
        except EdgecompError as err:
            print(f"edgecomp: error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    return wrapper


def _edgecomp_cause(err: BaseException) -> EdgecompError | None:
    """The EdgecompError behind an OmegaConf error (its cause, or the exception it was raised while handling)."""
    seen = err.__cause__ or err.__context__
    while seen is not None and not isinstance(seen, EdgecompError):
        seen = seen.__cause__ or seen.__context__
    return seen


def _unknown_reference(cfg: DictConfig, err: InterpolationKeyError) -> str:
    """A key whose value refers to one that does not exist, in one line; for a dataset's `size`, the sizes it has."""
    dataset = cfg.get("dataset") or {}
    sizes = dataset.get("sizes")
    size = dataset.get("size")
    if sizes is not None and size not in sizes:
        return f"dataset.size={size}: dataset={dataset.get('name')} has the sizes {', '.join(sizes)}"
    return f"{err.full_key}: {str(err).splitlines()[0]}"
