"""Checked reading and decoding for tf.data: nothing is lost without a name.

Two kinds of fault, two outcomes:

- A single image that cannot be decoded (truncated, not an image, a garbage body between
  valid markers) is skipped and recorded in the :class:`DataReport` under its name, with
  the reason. It never stops an epoch.
- A record file that cannot be read to its end (a truncated TFRecord shard, a flipped byte
  that breaks a checksum, a missing or unreadable file) stops the iteration with an
  ``InvalidArgumentError`` (from :func:`checked_records`) or TensorFlow's own
  ``NotFoundError``, naming the file. Nothing after the fault is silently dropped.

So for every completed pass, ``examples - skipped == yielded``.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import tensorflow as tf

from synthaug.imagenet_data.report import DataReport

AUTOTUNE = tf.data.AUTOTUNE
#: Examples decoded as one unit: a decode failure inside a chunk is found by the gap it
#: leaves in the chunk's indices and recorded under its name.
DECODE_CHUNK = 64
#: Bytes of TFRecord framing per record: uint64 length, two uint32 masked CRC-32C.
RECORD_OVERHEAD = 16

_GLOB_CHARS = re.compile(r"[*?\[\]\\]")
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


def checked_records(files: list[str], expected_counts: list[int] | None = None) -> tf.data.Dataset:
    """Per-file datasets of ``(record, index)`` that fail loudly on data loss.

    ``tf.data.TFRecordDataset`` raises a ``DataLossError`` that does not name the file on a
    truncated or corrupt record. Here each file is read with its errors contained, the bytes
    of the records read are counted (record length plus 16 bytes of framing), and after the
    last record the count is checked against the file's size on disk (and the number of
    records against ``expected_counts``, where known): a mismatch raises an
    ``InvalidArgumentError`` whose message names the file, the records read and the bytes.

    Args:
      files: uncompressed TFRecord files.
      expected_counts: records per file (e.g. from a manifest), or None.

    Returns:
      ``(read, files_ds)``: ``files_ds`` is a dataset of ``(path, size, expected)`` (shuffle
      or shard it as the files), and ``read(path, size, expected)`` the dataset of
      ``(record, int64 index in the file)`` of one file, for ``interleave``.

    Raises:
      FileNotFoundError: a file that cannot be found or stat-ed.
    """
    sizes = []
    for f in files:
        try:
            stat = tf.io.gfile.stat(f)
        except tf.errors.OpError as e:
            raise FileNotFoundError(f"record file: cannot read {f} ({e.message})") from None
        if stat.is_directory or ("://" not in f and not os.access(f, os.R_OK)):
            raise FileNotFoundError(f"record file: {f} is not a readable file")
        sizes.append(int(stat.length))
    counts = [-1] * len(files) if expected_counts is None else [int(c) for c in expected_counts]
    files_ds = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant(files, tf.string),
            tf.constant(sizes, tf.int64),
            tf.constant(counts, tf.int64),
        )
    )

    globbable = not any(_GLOB_CHARS.search(f) for f in files)

    def read(path, size, expected):
        # A read or data-loss error ends this file's records; the tail check below turns the
        # shortfall into an error that names the file.
        # A file that vanished since is read as empty (an error opening it would repeat
        # forever under ignore_errors), so it fails the check too.
        present = tf.io.matching_files(path) if globbable else path
        recs = tf.data.TFRecordDataset(present).ignore_errors()
        marked = recs.map(lambda r: (r, tf.constant(False))).concatenate(
            tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))
        )

        def step(state, x):
            n, nbytes = state
            record, end = x
            grow = tf.cast(tf.strings.length(record), tf.int64) + RECORD_OVERHEAD
            new = (
                n + tf.cast(~end, tf.int64),
                nbytes + tf.where(end, tf.constant(0, tf.int64), grow),
            )
            return new, (record, n, end, nbytes)

        def check(record, n, end, nbytes):
            complete = tf.logical_and(
                tf.equal(nbytes, size), tf.logical_or(expected < 0, tf.equal(n, expected))
            )
            msg = tf.strings.join(
                [
                    path,
                    ": data loss: read ",
                    tf.strings.as_string(n),
                    " records, ",
                    tf.strings.as_string(nbytes),
                    " of ",
                    tf.strings.as_string(size),
                    " bytes",
                    tf.where(
                        expected < 0,
                        "",
                        tf.strings.join(
                            [", expected ", tf.strings.as_string(expected), " records"]
                        ),
                    ),
                    "; the file is truncated or corrupt",
                ]
            )
            ok = tf.debugging.Assert(tf.logical_or(~end, complete), [msg])
            with tf.control_dependencies([ok]):
                keep = tf.identity(~end)
            return record, n, keep

        out = marked.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)
        out = out.map(check).filter(lambda r, n, keep: keep)
        return out.map(lambda r, n, keep: (r, n))

    return read, files_ds


def _checked_decode(report: DataReport | None, deterministic: bool):
    """``interleave`` function over chunks ``(encoded [k], label [k], name [k])`` decoding
    each image, skipping and recording (by name) the ones that fail to decode."""

    def record(names, encoded):
        for n, b in zip(names.numpy(), encoded.numpy(), strict=True):
            reason = _pil_error(b) or "cannot decode"
            if report is not None:
                report.record_skip(n.decode("utf-8", "replace"), reason)
        return np.int64(0)

    def chunk(encoded, label, name):
        k = tf.shape(label, out_type=tf.int64)[0]
        idx = tf.range(k, dtype=tf.int64)
        decoded = (
            tf.data.Dataset.from_tensor_slices((encoded, label, idx))
            .map(lambda b, y, i: (decode_rgb(b), y, i, tf.constant(True)))
            .ignore_errors()  # one image at a time: the gap it leaves is recorded below
        )
        tail = tf.data.Dataset.from_tensors(
            (tf.zeros([0, 0, 3], tf.uint8), tf.constant(-1, tf.int32), k, tf.constant(False))
        )

        def step(expected, x):
            image, y, i, real = x

            def gap():
                return tf.py_function(record, [name[expected:i], encoded[expected:i]], tf.int64)

            done = tf.cond(i > expected, gap, lambda: tf.constant(0, tf.int64))
            return i + 1 + done, (image, y, real)

        out = decoded.concatenate(tail).scan(tf.constant(0, tf.int64), step)
        return out.filter(lambda image, y, real: real).map(lambda image, y, real: (image, y))

    return chunk


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
    Images that fail the structural check and a Python decode, and (with ``decode=True``)
    images TensorFlow cannot decode, are skipped and recorded by name. Errors of the input
    itself (unreadable files, data loss in a record file) are not caught here: they stop
    the iteration.
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
        ds = ds.batch(DECODE_CHUNK).interleave(
            _checked_decode(report, deterministic),
            cycle_length=AUTOTUNE,
            block_length=DECODE_CHUNK,
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
    else:
        ds = ds.map(lambda b, y, n: (b, y))
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)
