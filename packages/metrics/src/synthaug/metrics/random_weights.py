"""Reproducible random weights in PyTorch state-dict form (NumPy only, no JAX, no torch).

The real FID Inception weights (``pt_inception-2015-12-05-6726825d.pth``, ~95 MB) cannot be
shipped with tests. Instead, the golden-fixture script and the tests both draw the same random
state dict from this module: each array comes from ``numpy.random.RandomState`` (whose
streams NumPy keeps fixed across releases) seeded by the seed and the CRC32 of the key, so the
values depend only on (seed, key, shape) and never on the order of the keys. This file imports
nothing but NumPy and the standard library, so the fixture script can load it by path in an
environment without JAX.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

__all__ = ["random_state_dict"]


def _rng(seed: int, key: str) -> np.random.RandomState:
    return np.random.RandomState((seed * 1_000_003 + zlib.crc32(key.encode())) % (2**32))


def random_state_dict(
    shapes: Iterable[tuple[str, tuple[int, ...]]], *, seed: int
) -> dict[str, np.ndarray]:
    """Draws a random conv/batch-norm/linear state dict that keeps activations O(1).

    Args:
      shapes: ``(key, shape)`` pairs in PyTorch naming: ``*.conv.weight`` (O, I, kh, kw),
        ``*.bn.{weight,bias,running_mean,running_var}``, ``*.weight`` / ``*.bias`` of linear
        layers. Keys ending in ``num_batches_tracked`` are skipped.
      seed: the base seed.

    Returns:
      A dict from key to a float32 array of the given shape.

    Raises:
      ValueError: a key's role cannot be told from its name.
    """
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes:
        shape = tuple(int(s) for s in shape)
        if key.endswith("num_batches_tracked"):
            continue
        rs = _rng(seed, key)
        if key.endswith("running_var"):
            a = rs.uniform(0.5, 1.5, size=shape)
        elif key.endswith("bn.weight"):
            a = rs.uniform(0.5, 1.5, size=shape)
        elif key.endswith("running_mean") or key.endswith("bias"):
            a = 0.1 * rs.standard_normal(shape)
        elif key.endswith("weight") and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            a = rs.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            raise ValueError(f"cannot tell the role of state-dict key {key!r} (shape {shape})")
        out[key] = a.astype(np.float32)
    return out
