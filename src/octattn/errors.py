"""Errors that describe a user's mistake: the CLI prints them as one line, no traceback."""

from __future__ import annotations


class OctattnError(Exception):
    """Base class of the errors octattn reports to a user as one clear line."""


class WeightsError(OctattnError):
    """Weights cannot be found, fetched, or do not fit the model."""


class BadImageError(OctattnError):
    """An image file cannot be used; the message names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class DataError(OctattnError):
    """A data set folder or manifest is not usable as given."""


class ConfigError(OctattnError):
    """An experiment configuration is invalid."""
