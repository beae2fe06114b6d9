"""Atomic file output: every file is written to a temporary name, then renamed."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Args:
      path: the final file name.

    Yields:
      A temporary file name in the same directory. It is removed if the block raises.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary directory next to ``path``; it replaces ``path`` only on success."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy / jax scalars and arrays
        return x.tolist()
    if isinstance(x, pathlib.Path):
        return str(x)
    return x


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NumPy values become lists)."""
    return write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


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
