"""Errors edgecomp raises: for bad input, each says what was wrong, where, and what was expected; for a run that
failed on good input (TrainingDiverged), what happened and what to change."""


class EdgecompError(Exception):
    """Base class: the entry points print these as one clear message instead of a traceback."""


class DatasetError(EdgecompError):
    """A dataset root or file is missing or malformed."""


class CheckpointError(EdgecompError):
    """A checkpoint is missing, unsafe to load, or does not fit the configured model."""


class DeviceError(EdgecompError):
    """The target device cannot be used on this machine."""


class ConfigError(EdgecompError):
    """A config value is out of its valid range."""


class TrainingDiverged(EdgecompError):
    """A training run failed on input that was accepted: its loss became infinite or NaN. A runtime failure, not bad
    input (the same settings may train on other data or another seed); the message says which settings to lower."""
