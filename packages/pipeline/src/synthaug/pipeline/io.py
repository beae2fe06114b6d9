"""The pipeline's file helpers: existence checks here, atomic writes from synthaug.io.

``atomic_path``, ``atomic_dir``, ``write_text`` and ``write_json`` are synthaug.io's (every
file is written to a temporary name, then renamed), re-exported for the stages.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from synthaug.io import atomic_dir, atomic_path, write_json, write_text
from synthaug.pipeline.errors import MissingPathError

__all__ = [
    "atomic_dir",
    "atomic_path",
    "read_json",
    "require_dir",
    "require_file",
    "write_json",
    "write_text",
]


def require_dir(path: str | os.PathLike, what: str) -> pathlib.Path:
    """Return ``path`` as a Path if it is a directory, else raise :class:`MissingPathError`.

    Args:
      path: the directory.
      what: what the directory is, for the message (e.g. "checkpoint directory").
    """
    p = pathlib.Path(path)
    if not str(path) or not p.is_dir():
        raise MissingPathError(f"{what} not found: {str(path)!r} is not a directory")
    return p


def require_file(path: str | os.PathLike, what: str) -> pathlib.Path:
    """Return ``path`` as a Path if it is a file, else raise :class:`MissingPathError`."""
    p = pathlib.Path(path)
    if not str(path) or not p.is_file():
        raise MissingPathError(f"{what} not found: {str(path)!r} is not a file")
    return p


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON document in ``path``.

    Raises:
      MissingPathError: ``path`` is not a file.
      ConfigError: the file is not valid JSON (the message names the file and the place).
    """
    from synthaug.pipeline.errors import ConfigError

    p = require_file(path, what)
    try:
        return json.loads(p.read_text())
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(p)!r} is not UTF-8 text: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{what} {str(p)!r} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
