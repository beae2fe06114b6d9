"""The embedded demo data set: scikit-learn's handwritten digits as small RGB images.

1,797 8x8 grey images of the digits 0-9 (values 0-16), bundled with scikit-learn, scaled
to uint8, upsampled (bicubic) to 16x16 or 32x32 and repeated over three channels. The
train/test split is fixed: per class, a seeded permutation (numpy PCG64, seed 0) puts 20%
of the images in ``test`` and the rest in ``train``.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # TensorFlow loads only when a tf.data pipeline is built
    import tensorflow as tf

DIGITS_CLASS_NAMES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
DIGITS_SIZES = (16, 32)
DIGITS_SPLITS = ("train", "test")
_TEST_FRACTION = 0.2


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: ``(images float64 [1797, 8, 8] in 0..16, target)``.

    Read straight from the CSV file scikit-learn ships (what ``load_digits`` parses), without
    importing scikit-learn and SciPy (seconds); ``load_digits`` if the file is not found.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    target = _load_digits()[1]
    rng = np.random.default_rng(0)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(target == c))
        n_test = int(round(len(idx) * _TEST_FRACTION))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


@functools.lru_cache(maxsize=4)
def _all_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, target = _load_digits()
    grey = np.round(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    out = np.empty((len(grey), size, size, 3), np.uint8)
    for i, g in enumerate(grey):
        up = np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC))
        out[i] = up[..., None]
    out.setflags(write=False)
    labels = target.astype(np.int32)
    labels.setflags(write=False)
    return out, labels


def digits_arrays(split: str = "train", size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The digits demo data as arrays.

    Args:
      split: ``"train"`` (1,438 images) or ``"test"`` (359 images).
      size: 16 or 32.

    Returns:
      (images uint8 ``[N, size, size, 3]``, labels int32 ``[N]``), fresh writable copies.
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split: expected one of {DIGITS_SPLITS}, got {split!r}")
    if size not in DIGITS_SIZES:
        raise ValueError(f"size: expected one of {DIGITS_SIZES}, got {size!r}")
    images, labels = _all_images(size)
    idx = _split_indices()[split]
    return images[idx].copy(), labels[idx].copy()


def digits(split: str = "train", size: int = 32) -> tf.data.Dataset:
    """The digits demo data as a ``tf.data.Dataset`` of ``(uint8 [size, size, 3], int32)``.

    Args:
      split: ``"train"`` or ``"test"``.
      size: 16 or 32.
    """
    import tensorflow as tf

    images, labels = digits_arrays(split, size)
    return tf.data.Dataset.from_tensor_slices((images, labels))


def digits_class_name(label: int) -> str:
    """The class name of a digits label (``"zero"`` ... ``"nine"``)."""
    if int(label) != label or not 0 <= int(label) < 10:
        raise KeyError(f"label: expected an int in [0, 10), got {label!r}")
    return DIGITS_CLASS_NAMES[int(label)]
