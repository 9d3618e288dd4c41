"""A model's output as the flat sequence of tensors a deployed file holds, and back.

A detector's `forward` returns a dataclass of per-level lists (`HeadOutputs`); an exported ONNX file, a ModelOpt
trace or a runtime returns a flat sequence of tensors. `flat_tensors` gives the order (each field's tensors in turn,
fields in declaration order), `flat_names` a name per tensor in that order (the exported file's output names).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch


def flat_tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a model output, in order: a tensor, or dataclasses, sequences and mappings of them."""
    if isinstance(output, torch.Tensor):
        return [output]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [t for field in dataclasses.fields(output) for t in flat_tensors(getattr(output, field.name))]
    if isinstance(output, Mapping):
        return [t for value in output.values() for t in flat_tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flat_tensors(item)]
    return []


def flat_names(output: Any, prefix: str = "") -> list[str]:
    """A name for each of `flat_tensors(output)`, in the same order: the path of fields, keys and positions
    (e.g. `classification_0` for a HeadOutputs' first level)."""
    join = (lambda key: f"{prefix}_{key}") if prefix else str
    if isinstance(output, torch.Tensor):
        return [prefix or "output"]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [n for field in dataclasses.fields(output) for n in flat_names(getattr(output, field.name), join(field.name))]
    if isinstance(output, Mapping):
        return [n for key, value in output.items() for n in flat_names(value, join(key))]
    if isinstance(output, (list, tuple)):
        return [n for position, item in enumerate(output) for n in flat_names(item, join(position))]
    return []
