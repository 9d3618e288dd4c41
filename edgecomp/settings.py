"""Typed settings: what a compressor (or any other configurable part) accepts, declared once, checked in one place.

A settings class lists its keys as pydantic fields: the type, the range (`Field(ge=, gt=, le=, lt=)`), the values a
switch may take (`Literal`), the default, and a description written as what is expected ("a whole number of
fine-tuning epochs >= 0 (the report: 50)"). A rule that ties fields together is a `model_validator` of the class.
`validated` turns a mapping (a Hydra config node, keyword arguments) into an instance, or refuses it with the one line
the entry points print as `edgecomp: error: ...`: `compressor.<key>=<value as given>: expected <description>`, or a
cross-field rule's own message.

Why pydantic (v2) and not Hydra's structured configs:
- ranges, literals and cross-field rules are declared with the field, once; a structured config (a dataclass that
  OmegaConf checks) checks types only, so every range would still be an if/raise in the compressor;
- strict mode refuses `epochs: 2.5` for a whole number and `true` for a number, where hand-written checks truncated,
  passed on or refused them depending on the compressor; `extra="forbid"` refuses a misspelt key instead of
  ignoring it;
- the fields and their descriptions give a JSON schema (`model_json_schema()`) from which the reference of the
  config options can be generated;
- NVIDIA ModelOpt, which FastNAS runs, gives each of its modes a pydantic config of the same kind.

This module is the lowest layer beside errors.py and config.py: it imports no edgecomp subpackage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from edgecomp.errors import ConfigError

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class Settings(BaseModel):
    """Base of every settings class: unknown keys refused, types strict (an int is still a float), read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


SettingsClass = TypeVar("SettingsClass", bound=Settings)


def percent_or_fraction(value: Any) -> Any:
    """A share given as a percentage ("66%") as the fraction it means (0.66); anything else as it is."""
    if isinstance(value, str) and (match := _PERCENT.match(value)):
        return float(match.group(1)) / 100
    return value


def list_as_tuple(value: Any) -> Any:
    """A list (how a YAML or command-line sequence arrives) as a tuple, for a field typed as one."""
    return tuple(value) if isinstance(value, list) else value


# A share strictly between 0 and 1, given as a percentage or a fraction: "66%" and 0.66 are the same value. The range
# (Field(gt=0, lt=1)) and the description go with each field that uses it.
Share = Annotated[float, BeforeValidator(percent_or_fraction)]


def plain(value: Any) -> Any:
    """An OmegaConf container (what Hydra's instantiate passes for a nested node) as plain dicts and lists, its
    interpolations resolved; anything else as it is."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def validated(
    settings_class: type[SettingsClass], values: Mapping[str, Any], prefix: str = "compressor"
) -> SettingsClass:
    """`values` as an instance of `settings_class`, or a ConfigError of one line naming the first key refused, as
    `<prefix>.<key>`:
    - a value of the wrong type or out of range: `<prefix>.<key>=<value as given>: expected <the field's
      description>` (a nested settings class gives a dotted key, e.g. `compressor.sdf.dilations`);
    - an unknown key: `<prefix>.<key>=<value>: not a setting: expected one of <the keys>`;
    - a required key missing: `<prefix>.<key>: missing: expected <the field's description>`;
    - a cross-field rule (a model validator raising ValueError): its message, which starts with the key it names
      relative to its class (`heads=3: ...`), after the class's own dotted place (`compressor.csa.heads=3: ...`).
    OmegaConf containers among the values are converted to plain ones first."""
    given = {str(key): plain(value) for key, value in values.items()}
    try:
        return settings_class.model_validate(given)
    except ValidationError as err:
        errors = err.errors()
        # A misspelt key first: it is why a required key is missing, if one is.
        first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(_refusal(settings_class, given, first, prefix)) from None


_MISSING = object()  # a key the settings were not given


def _settings_class(annotation: Any) -> type[Settings] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, Settings) else None


def _refusal(settings_class: type[Settings], given: dict[str, Any], error: Any, prefix: str) -> str:
    """One line for pydantic's `error` (an entry of ValidationError.errors()) about `given`."""
    loc = [str(part) for part in error["loc"]]
    # The key: the fields along `loc` while they lead into nested settings classes (a list index, a dict key or a
    # union member below a field is part of that field's value).
    model: type[Settings] | None = settings_class
    keys: list[str] = []
    value: Any = given
    description = None
    for part in loc:
        if model is None or part not in model.model_fields:
            break
        keys.append(part)
        field = model.model_fields[part]
        description = field.description
        value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        model = _settings_class(field.annotation)
    kind = error["type"]
    if kind == "extra_forbidden":
        unknown = ".".join([prefix, *loc])
        known = ", ".join(model.model_fields) if model is not None else ""
        return f"{unknown}={error['input']}: not a setting: expected one of {known}"
    if kind in ("value_error", "assertion_error") and len(keys) == len(loc) and model is not None:
        # a rule of the (nested) settings class at `keys`, which names its keys itself
        return ".".join([prefix, *keys]) + "." + str(error["ctx"]["error"])
    key = ".".join([prefix, *keys])
    expected = description or error["msg"]
    if kind == "missing" or value is _MISSING:
        return f"{key}: missing: expected {expected}"
    return f"{key}={value}: expected {expected}"

