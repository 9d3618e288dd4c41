"""What the entry points share, kept free of heavy imports so Hydra rejects a bad command line at once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from edgecomp.config import resolved_config
from edgecomp.errors import EdgecompError


def entry_point(run: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a task function for @hydra.main: a missing required value fails before anything is imported or
    built, and bad input (an EdgecompError) ends the job with its message alone."""

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
        try:
            return run(cfg)
        except EdgecompError as err:
            print(f"edgecomp: error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    return wrapper
