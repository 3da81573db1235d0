"""Exceptions that carry a message meant for the user: what is wrong, where, and what to do.

The CLI prints these as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class EdgeBusError(Exception):
    """Base class of every error whose message is written for the user."""


class DataError(EdgeBusError):
    """A data folder, image or mask that cannot be used."""


class PreprocessError(DataError):
    """A frame or image that preprocessing cannot turn into a model input."""


class BundleError(EdgeBusError):
    """A bundle folder or manifest that is missing, malformed, rejected or does not fit."""


class BackendError(EdgeBusError):
    """A backend that cannot be opened or run on this machine."""


class SourceError(EdgeBusError):
    """A frame source that cannot be opened or has gone away."""


class ConfigError(EdgeBusError):
    """A configuration file or option that is invalid."""


class CheckpointError(EdgeBusError):
    """A checkpoint that is missing, corrupt or of an unknown format."""
