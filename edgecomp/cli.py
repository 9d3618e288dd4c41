"""What the entry points share, kept free of heavy imports so Hydra rejects a bad command line at once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from omegaconf import DictConfig

from edgecomp.config import resolved_config
from edgecomp.errors import EdgecompError


def entry_point(run: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a task function for @hydra.main: a missing required value fails before anything is imported or
    built, and bad input (an EdgecompError) ends the job with its message alone."""

    @wraps(run)
    def wrapper(cfg: DictConfig) -> Any:
        resolved_config(cfg)  # raises on any `???` left unset, with Hydra's message
        try:
            return run(cfg)
        except EdgecompError as err:
            print(f"edgecomp: error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    return wrapper
