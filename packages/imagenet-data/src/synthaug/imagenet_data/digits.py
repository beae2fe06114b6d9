"""The embedded demo data set: scikit-learn's handwritten digits as small RGB images.

1,797 8x8 grey images of the digits 0-9 (values 0-16), bundled with scikit-learn, scaled
to uint8, upsampled (bicubic) to 16x16 or 32x32 and repeated over three channels. The
train/test split is fixed: per class, a seeded permutation (numpy PCG64, seed 0) puts 20%
of the images in ``test`` and the rest in ``train``.
"""

from __future__ import annotations

import functools
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
def _split_indices() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    target = load_digits().target
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
    from sklearn.datasets import load_digits

    d = load_digits()
    grey = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    out = np.empty((len(grey), size, size, 3), np.uint8)
    for i, g in enumerate(grey):
        up = np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC))
        out[i] = up[..., None]
    out.setflags(write=False)
    labels = d.target.astype(np.int32)
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
