"""The ADM evaluation reference-batch ``.npz`` format (guided-diffusion ``evaluations/``).

A reference batch such as ``VIRTUAL_imagenet256_labeled.npz`` is an uncompressed ``.npz`` with

* ``arr_0``: uint8 images [N, H, W, 3] (a sample batch holds only this; ``arr_1`` may hold
  labels);
* ``mu``, ``sigma``: mean [2048] and covariance [2048, 2048] of the Inception pool3 features;
* ``mu_s``, ``sigma_s``: the same for the spatial features used by sFID (optional here).

Published FIDs compare a sample batch's statistics with ``mu``/``sigma``. This module reads
those files without loading the (often 10 GB) image array unless asked, streams the images in
batches, and writes statistics computed here in the same format.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from synthaug.io import atomic_path
from synthaug.metrics.stats import RunningStats

__all__ = [
    "ReferenceBatch",
    "iter_reference_images",
    "load_reference_npz",
    "reference_statistics",
    "save_reference_npz",
]

_STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")


@dataclasses.dataclass
class ReferenceBatch:
    """The contents of a reference-batch ``.npz``.

    Attributes:
      mu, sigma: pool3 statistics (None when the file has none).
      mu_s, sigma_s: spatial-feature statistics (None when absent).
      num_images: number of images in ``arr_0`` (0 when absent).
      image_shape: shape of one image, or None.
      images: the images, only when loaded with ``load_images=True``.
      labels: ``arr_1`` when present and loaded with ``load_images=True``.
    """

    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    mu_s: np.ndarray | None = None
    sigma_s: np.ndarray | None = None
    num_images: int = 0
    image_shape: tuple[int, ...] | None = None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None


def _open_member(zf: zipfile.ZipFile, name: str):
    f = zf.open(name + ".npy")
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        f.close()
        raise ValueError(f"{name}: unsupported .npy format version {version}")
    return f, tuple(shape), fortran, dtype


def _check_path(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference batch not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz archive (expected keys arr_0 and/or mu, sigma)")
    return path


def load_reference_npz(path: str | os.PathLike, *, load_images: bool = False) -> ReferenceBatch:
    """Reads an ADM reference (or sample) batch.

    Args:
      path: the ``.npz`` file.
      load_images: also load ``arr_0`` (and ``arr_1``) into memory.

    Returns:
      A :class:`ReferenceBatch`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an npz, neither images nor statistics inside, or inconsistent shapes.
    """
    path = _check_path(path)
    out = ReferenceBatch()
    with zipfile.ZipFile(path) as zf:
        names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        if "arr_0" not in names and not {"mu", "sigma"} <= names:
            raise ValueError(
                f"{path}: expected 'arr_0' images and/or 'mu' and 'sigma' statistics, "
                f"found {sorted(names)}"
            )
        if "arr_0" in names:
            f, shape, _, dtype = _open_member(zf, "arr_0")
            f.close()
            if len(shape) != 4 or shape[-1] != 3:
                raise ValueError(f"{path}: arr_0 must be [N, H, W, 3] images, got {shape}")
            out.num_images, out.image_shape = shape[0], shape[1:]
    with np.load(path, allow_pickle=False) as data:
        for key in _STAT_KEYS:
            if key in data.files:
                setattr(out, key, np.asarray(data[key], np.float64))
        if load_images and "arr_0" in data.files:
            out.images = data["arr_0"]
            if "arr_1" in data.files:
                out.labels = data["arr_1"]
    for m, s in (("mu", "sigma"), ("mu_s", "sigma_s")):
        mu, sigma = getattr(out, m), getattr(out, s)
        if (mu is None) != (sigma is None):
            raise ValueError(f"{path}: has only one of {m!r} and {s!r}")
        if mu is not None and (mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0])):
            raise ValueError(f"{path}: {m} {mu.shape} and {s} {sigma.shape} do not match")
    return out


def iter_reference_images(
    path: str | os.PathLike, *, batch_size: int = 256
) -> Iterator[np.ndarray]:
    """Streams ``arr_0`` of an ``.npz`` in batches without loading it whole.

    Args:
      path: the ``.npz`` file (stored uncompressed, as the ADM files are, or compressed).
      batch_size: images per batch.

    Yields:
      uint8 arrays [b, H, W, 3].
    """
    path = _check_path(path)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with zipfile.ZipFile(path) as zf:
        if "arr_0.npy" not in zf.namelist():
            raise ValueError(f"{path}: no 'arr_0' images in this file")
        f, shape, fortran, dtype = _open_member(zf, "arr_0")
        with f:
            if fortran or dtype.hasobject:
                raise ValueError(f"{path}: arr_0 must be a C-ordered numeric array")
            per = int(np.prod(shape[1:])) * dtype.itemsize
            for lo in range(0, shape[0], batch_size):
                b = min(batch_size, shape[0] - lo)
                buf = f.read(b * per)
                if len(buf) != b * per:
                    raise ValueError(f"{path}: arr_0 is truncated at image {lo}")
                yield np.frombuffer(buf, dtype=dtype).reshape((b, *shape[1:]))


def save_reference_npz(
    path: str | os.PathLike,
    *,
    mu: Any,
    sigma: Any,
    mu_s: Any = None,
    sigma_s: Any = None,
    images: Any = None,
) -> None:
    """Writes statistics (and optionally images) in the ADM reference-batch format.

    The file is written to a temporary name in the same directory, then renamed.

    Args:
      path: output ``.npz``.
      mu, sigma: pool3 mean [d] and covariance [d, d] (stored as float64).
      mu_s, sigma_s: optional spatial-feature statistics.
      images: optional uint8 images [N, H, W, 3], stored as ``arr_0``.
    """
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    for m, s, mv, sv in (("mu", "sigma", mu, sigma), ("mu_s", "sigma_s", mu_s, sigma_s)):
        if mv is None and sv is None:
            continue
        if mv is None or sv is None:
            raise ValueError(f"save_reference_npz: give both {m} and {s}")
        mv, sv = np.asarray(mv, np.float64), np.asarray(sv, np.float64)
        if mv.ndim != 1 or sv.shape != (mv.shape[0], mv.shape[0]):
            raise ValueError(f"save_reference_npz: {m} {mv.shape} and {s} {sv.shape} do not match")
        arrays[m], arrays[s] = mv, sv
    if images is not None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"save_reference_npz: images must be uint8 [N, H, W, 3], got "
                f"{images.dtype} {images.shape}"
            )
        arrays["arr_0"] = images
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def reference_statistics(
    batches: Iterable[Any],
    feature_fn: Callable[[Any], Any],
    *,
    path: str | os.PathLike | None = None,
) -> RunningStats:
    """Streams image batches through a feature function and accumulates pool3 statistics.

    Args:
      batches: iterable of image batches [b, H, W, 3] (uint8, or float in [0, 1]).
      feature_fn: e.g. ``make_feature_fn(params)``; its first output is used.
      path: if given, the statistics are also written there with :func:`save_reference_npz`.

    Returns:
      The :class:`RunningStats` (``.mean``, ``.cov``, ``.count``).
    """
    stats = RunningStats()
    for batch in batches:
        out = feature_fn(batch)
        feats = out[0] if isinstance(out, tuple | list) else out
        stats.update(np.asarray(feats))
    if path is not None:
        save_reference_npz(path, mu=stats.mean, sigma=stats.cov)
    return stats
