"""The pipeline's file helpers: existence checks here, atomic writes from synthaug.io.

``atomic_path``, ``atomic_dir``, ``write_text`` and ``write_json`` are synthaug.io's (every
file is written to a temporary name, then renamed), re-exported for the stages.
"""

from __future__ import annotations

import os
import pathlib

from synthaug.io import atomic_dir, atomic_path, write_json, write_text
from synthaug.pipeline.errors import MissingPathError

__all__ = [
    "atomic_dir",
    "atomic_path",
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
