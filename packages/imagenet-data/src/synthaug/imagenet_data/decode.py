"""Checked image decoding for tf.data: corrupt files are skipped and reported, never fatal."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf

from synthaug.imagenet_data.report import DataReport

AUTOTUNE = tf.data.AUTOTUNE

_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def looks_complete(encoded: tf.Tensor) -> tf.Tensor:
    """Cheap structural check of an encoded image (graph-friendly, no decoding).

    A JPEG must start with the SOI marker and end with the EOI marker, a PNG must start with
    the PNG signature and end with the IEND chunk. Truncated files and non-image bytes fail.
    Files that fail are not necessarily corrupt (e.g. a JPEG with trailing bytes): callers
    confirm them with a full decode (:func:`_confirm_decodable`).

    Args:
      encoded: a scalar string tensor holding the file bytes.

    Returns:
      A scalar bool tensor.
    """
    n = tf.strings.length(encoded)
    is_jpeg = tf.logical_and(
        tf.equal(tf.strings.substr(encoded, 0, 3), _JPEG_SOI),
        tf.equal(tf.strings.substr(encoded, tf.maximum(n - 2, 0), 2), _JPEG_EOI),
    )
    is_png = tf.logical_and(
        tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIG),
        tf.equal(tf.strings.substr(encoded, tf.maximum(n - 8, 0), 8), _PNG_END),
    )
    return tf.logical_and(n > 16, tf.logical_or(is_jpeg, is_png))


def _pil_error(data: bytes) -> str:
    """'' if PIL fully decodes ``data`` to an image TensorFlow can also decode, else why not."""
    from PIL import Image

    if len(data) == 0:
        return "empty file"
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()
    except Exception as e:  # any decoder failure means the file is unusable
        return f"cannot decode ({type(e).__name__}: {e})"
    if fmt not in ("JPEG", "PNG", "GIF", "BMP"):
        return f"unsupported image format {fmt}"
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return f"cannot decode ({e.message.splitlines()[0] if e.message else type(e).__name__})"
    return ""


def checked_filter(report: DataReport | None):
    """A ``Dataset.filter`` predicate over ``(encoded, label, name)`` that drops bad files.

    Complete-looking files pass at graph speed; the others are decoded once in Python (PIL),
    kept if that succeeds and otherwise recorded in ``report`` with the reason.
    """

    def confirm(encoded, name):
        data = encoded.numpy()
        reason = _pil_error(data)
        if reason and report is not None:
            report.record_skip(name.numpy().decode("utf-8", "replace"), reason)
        return np.bool_(not reason)

    def predicate(encoded, label, name):
        del label

        def slow():
            ok = tf.py_function(confirm, [encoded, name], tf.bool)
            ok.set_shape([])
            return ok

        return tf.cond(looks_complete(encoded), lambda: tf.constant(True), slow)

    return predicate


def checked_label_filter(num_classes: int, report: DataReport | None, hint: str = ""):
    """A filter predicate over ``(encoded, label, name)`` dropping (and recording) labels out
    of ``[0, num_classes)``."""

    def record(label, name):
        if report is not None:
            report.record_skip(
                name.numpy().decode("utf-8", "replace"),
                f"label {int(label.numpy())} outside [0, {num_classes}){hint}",
            )
        return np.bool_(False)

    def predicate(encoded, label, name):
        del encoded
        inside = tf.logical_and(label >= 0, label < num_classes)

        def bad():
            ok = tf.py_function(record, [label, name], tf.bool)
            ok.set_shape([])
            return ok

        return tf.cond(inside, lambda: tf.constant(True), bad)

    return predicate


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    """Decode JPEG/PNG/GIF/BMP bytes to a uint8 ``[H, W, 3]`` tensor (grey and RGBA -> RGB)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    return tf.ensure_shape(image, [None, None, 3])


def finish(
    ds: tf.data.Dataset,
    *,
    report: DataReport | None,
    decode: bool,
    deterministic: bool,
    num_classes: int | None = None,
    label_hint: str = "",
) -> tf.data.Dataset:
    """Turn ``(encoded, label, name)`` elements into checked ``(image, label)`` pairs.

    Labels travel with their own image through every step, so skipping never shifts them.
    Decoding errors that pass both checks are dropped by ``ignore_errors`` as a last resort
    so that an epoch never stops on a bad file.
    """
    ds = ds.map(
        lambda b, y, n: (b, tf.cast(y, tf.int32), n),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if num_classes is not None:
        ds = ds.filter(checked_label_filter(num_classes, report, label_hint))
    ds = ds.filter(checked_filter(report))
    if decode:
        ds = ds.map(
            lambda b, y, n: (decode_rgb(b), y),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
    else:
        ds = ds.map(lambda b, y, n: (b, y))
    ds = ds.ignore_errors()
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)
