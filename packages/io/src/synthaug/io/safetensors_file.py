"""The one reader of ``.safetensors`` files: the ``safetensors`` library's NumPy API.

The format holds no code (an 8-byte header length, a JSON header, raw little-endian bytes);
the library validates the header (offsets that cover the data exactly, no overlaps) and
memory-maps the file. This module only names the file in every error and offers a lazy view
for large checkpoints (one tensor read at a time).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from synthaug.io.errors import WeightsFileError

__all__ = ["SafetensorsFile", "read_safetensors"]


class SafetensorsFile:
    """An open ``.safetensors`` file whose tensors are read on demand.

    Use as a context manager, or call :meth:`close`. ``names()``, ``shape(name)`` and
    ``dtype(name)`` read only the header; ``read(name)`` returns one tensor as a NumPy array
    (``BF16`` as ``ml_dtypes.bfloat16``).

    Raises:
      FileNotFoundError: there is no such file.
      WeightsFileError: the file is not a valid safetensors file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"safetensors file not found: {self.path}")
        try:
            self._file = safe_open(self.path, framework="np")
            self._handle = self._file.__enter__()
            self._names = list(self._handle.keys())
        except SafetensorError as e:
            raise WeightsFileError(
                f"{self.path}: not a safetensors file, or a damaged or truncated one ({e})"
            ) from None

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.__exit__(None, None, None)
            self._file = None

    def names(self) -> list[str]:
        return list(self._names)

    def metadata(self) -> dict[str, str]:
        return dict(self._handle.metadata() or {})

    def _check(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(f"{self.path}: no tensor named {name!r}")

    def shape(self, name: str) -> tuple[int, ...]:
        self._check(name)
        return tuple(self._handle.get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        """The safetensors dtype name (``"F32"``, ``"BF16"``, ...)."""
        self._check(name)
        return self._handle.get_slice(name).get_dtype()

    def read(self, name: str) -> np.ndarray:
        self._check(name)
        try:
            return self._handle.get_tensor(name)
        except (SafetensorError, KeyError, TypeError, ValueError) as e:
            raise WeightsFileError(
                f"{self.path}: cannot read tensor {name!r} of dtype {self.dtype(name)} ({e})"
            ) from None


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file.

    Args:
      path: the file.

    Returns:
      ``{name: numpy array}`` in the file's order (``BF16`` as ``ml_dtypes.bfloat16``).

    Raises:
      FileNotFoundError: there is no such file.
      WeightsFileError: the file is not a valid safetensors file, or holds a dtype NumPy
        cannot represent.
    """
    with SafetensorsFile(path) as f:
        out: dict[str, Any] = {name: f.read(name) for name in f.names()}
    return out
