"""Errors the `synthaug` command line reports in one line with exit code 2."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "MissingPathError",
    "PipelineError",
    "UnknownClassError",
]


class PipelineError(Exception):
    """Base class of the errors a stage raises for bad input (a config, a path, a name)."""


class ConfigError(PipelineError, ValueError):
    """A config names an unknown key, has a value of the wrong type, or cannot be loaded."""


class MissingPathError(PipelineError, FileNotFoundError):
    """A checkpoint, data directory or other input path that a stage needs does not exist."""


class UnknownClassError(PipelineError, KeyError):
    """A class name that is not in the label set of the data set."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""
