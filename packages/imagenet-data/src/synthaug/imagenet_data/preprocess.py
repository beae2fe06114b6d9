"""The paper's preprocessing as TensorFlow ops, usable eagerly and inside ``tf.data``.

Every op takes either a decoded uint8 ``[H, W, 3]`` image or a scalar string tensor of
encoded bytes (JPEG: only the needed window is decoded, with ``decode_and_crop_jpeg``; other
formats are decoded whole) and returns a uint8 ``[size, size, 3]`` image, except
:func:`to_float_range` which maps uint8 to float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from synthaug.imagenet_data.decode import decode_rgb


def _as_input(image) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.string:
        if image.shape.rank not in (None, 0):
            raise ValueError(f"image: expected a scalar string of encoded bytes, got {image.shape}")
        return image
    if image.dtype != tf.uint8:
        raise ValueError(f"image: expected uint8 [H, W, 3] or encoded bytes, got {image.dtype}")
    if image.shape.rank is not None and (image.shape.rank != 3 or image.shape[-1] not in (3, None)):
        raise ValueError(f"image: expected uint8 [H, W, 3], got shape {image.shape}")
    return image


def _shape_hw(image: tf.Tensor) -> tf.Tensor:
    """int32 [H, W] of an image tensor or of encoded bytes (JPEG header only)."""
    if image.dtype == tf.string:
        return tf.cond(
            tf.image.is_jpeg(image),
            lambda: tf.io.extract_jpeg_shape(image)[:2],
            lambda: tf.shape(decode_rgb(image))[:2],
        )
    return tf.shape(image)[:2]


def _crop(image: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Crop ``window`` = [y, x, h, w] (int32); for bytes, decode only that window if JPEG."""
    if image.dtype == tf.string:
        return tf.cond(
            tf.image.is_jpeg(image),
            lambda: tf.ensure_shape(
                tf.io.decode_and_crop_jpeg(image, window, channels=3), [None, None, 3]
            ),
            lambda: tf.image.crop_to_bounding_box(
                decode_rgb(image), window[0], window[1], window[2], window[3]
            ),
        )
    return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _resize(image: tf.Tensor, size: int, method: str) -> tf.Tensor:
    out = tf.image.resize(image, [size, size], method=method, antialias=method != "area")
    return _to_uint8(out)


def eval_resize_crop(
    image,
    *,
    resize_size: int = 256,
    crop_size: int = 224,
    square: bool = False,
    antialias: bool = False,
) -> tf.Tensor:
    """Evaluation preprocessing: resize (shorter side, or both sides) then center crop.

    With ``square=False`` the shorter side is resized to ``resize_size`` (the longer one to
    ``int(resize_size * long / short)``, as torchvision does) and the center
    ``crop_size`` square is kept: the paper's 256 -> 224 protocol for real images. With
    ``square=True`` the image is resized to ``resize_size`` squared first (the protocol for
    256x256 synthetic images). The crop offset is ``round((resized - crop_size) / 2)``.

    The result equals ``tf.image.resize(..., method="bilinear", antialias=antialias)`` of
    the whole image followed by the crop, but only the window of the original that
    contributes is touched: JPEG bytes decode just that window (``decode_and_crop_jpeg``)
    and one resampling step produces the output (``crop_and_resize`` at the exact sample
    positions; with ``antialias=True`` a scale-and-translate, which is closer to PIL's
    bilinear filter and about 3x slower).

    Args:
      image: uint8 ``[H, W, 3]`` or a scalar string of encoded bytes.
      resize_size: the size the image is resized to.
      crop_size: the output side.
      square: resize both sides instead of the shorter one.
      antialias: low-pass filter when downsampling (``tf.image.resize``'s default is off).

    Returns:
      uint8 ``[crop_size, crop_size, 3]``.
    """
    if not 0 < crop_size <= resize_size:
        raise ValueError(
            f"crop_size/resize_size: expected 0 < crop_size <= resize_size, "
            f"got {crop_size}/{resize_size}"
        )
    image = _as_input(image)
    hw = _shape_hw(image)
    hw_f = tf.cast(hw, tf.float64)
    if square:
        resized = tf.constant([resize_size, resize_size], tf.int32)
    else:
        short = tf.reduce_min(hw_f)
        resized = tf.where(
            hw_f == short,
            tf.constant(resize_size, tf.float64),
            tf.floor(resize_size * hw_f / short),
        )
        resized = tf.cast(resized, tf.int32)
    scale = tf.cast(resized, tf.float64) / hw_f  # per axis, as tf.image.resize
    offset = tf.cast(tf.round(tf.cast(resized - crop_size, tf.float64) / 2.0), tf.float64)
    if antialias:
        # the part of the original that the crop's kernels reach, plus a margin
        margin = tf.math.ceil(2.0 / tf.reduce_min(scale)) + 2.0
    else:
        margin = tf.constant(2.0, tf.float64)
    lo = tf.maximum(tf.floor(offset / scale) - margin, 0.0)
    hi = tf.minimum(tf.math.ceil((offset + crop_size) / scale) + margin, hw_f)
    lo_i = tf.cast(lo, tf.int32)
    window = tf.concat([lo_i, tf.cast(hi, tf.int32) - lo_i], axis=0)
    part = tf.cast(_crop(image, window), tf.float32)[None]
    if antialias:
        out = tf.raw_ops.ScaleAndTranslate(
            images=part,
            size=tf.constant([crop_size, crop_size], tf.int32),
            scale=tf.cast(scale, tf.float32),
            translation=tf.cast(lo * scale - offset, tf.float32),
            kernel_type="triangle",
            antialias=True,
        )[0]
    else:
        # bilinear sampling at the output pixel centres of resize-then-crop (half-pixel
        # centres), in the coordinates of the window padded by one edge pixel (= clamping)
        part = tf.pad(part, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        size = tf.cast(tf.shape(part)[1:3], tf.float64)
        first = (offset + 0.5) / scale - 0.5 - lo + 1.0
        last = first + (crop_size - 1) / scale
        box = tf.concat([first / (size - 1.0), last / (size - 1.0)], axis=0)
        out = tf.image.crop_and_resize(
            part, tf.cast(box, tf.float32)[None], [0], [crop_size, crop_size], method="bilinear"
        )[0]
    return tf.ensure_shape(_to_uint8(out), [crop_size, crop_size, 3])


def inception_crop_flip(
    image,
    *,
    size: int = 224,
    seed=None,
    area_range: Sequence[float] = (0.08, 1.0),
    aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3),
    min_object_covered: float = 0.1,
    max_attempts: int = 10,
    flip: bool = True,
    method: str = "bilinear",
) -> tf.Tensor:
    """Training preprocessing: Inception-style random crop, resize and random flip.

    A window covering ``area_range`` of the image with an aspect ratio in
    ``aspect_ratio_range`` is sampled (``sample_distorted_bounding_box``; the whole image if
    no window is found in ``max_attempts``), decoded (JPEG bytes: only that window), resized
    to ``size`` squared and flipped left-right with probability 1/2.

    Args:
      image: uint8 ``[H, W, 3]`` or a scalar string of encoded bytes.
      size: the output side.
      seed: an int32/int64 ``[2]`` seed for the stateless ops (same seed, same result, eager
        or in tf.data); None uses TensorFlow's stateful random ops.
      area_range: the allowed fraction of the image area.
      aspect_ratio_range: the allowed width / height.
      min_object_covered: passed to ``sample_distorted_bounding_box``.
      max_attempts: the number of tries to find a window.
      flip: flip left-right at random.
      method: a ``tf.image.resize`` method.

    Returns:
      uint8 ``[size, size, 3]``.
    """
    image = _as_input(image)
    hw = _shape_hw(image)
    shape = tf.concat([hw, [3]], axis=0)
    bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
    kwargs = dict(
        bounding_boxes=bbox,
        min_object_covered=min_object_covered,
        aspect_ratio_range=list(aspect_ratio_range),
        area_range=list(area_range),
        max_attempts=max_attempts,
        use_image_if_no_bounding_boxes=True,
    )
    if seed is not None:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, seed=seeds[0], **kwargs
        )
    else:
        begin, crop_size, _ = tf.image.sample_distorted_bounding_box(shape, **kwargs)
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    out = _resize(_crop(image, window), size, method)
    if flip:
        if seed is not None:
            out = tf.image.stateless_random_flip_left_right(out, seed=seeds[1])
        else:
            out = tf.image.random_flip_left_right(out)
    return tf.ensure_shape(out, [size, size, 3])


def diffusion_downsample(image, *, size: int = 64) -> tf.Tensor:
    """Downsampling for diffusion training: center crop the largest square, area resize.

    Args:
      image: uint8 ``[H, W, 3]`` or a scalar string of encoded bytes.
      size: the output side (64 for the base model, 256 for super-resolution).

    Returns:
      uint8 ``[size, size, 3]``; images smaller than ``size`` are upsampled (bicubic).
    """
    if size <= 0:
        raise ValueError(f"size: expected a positive int, got {size}")
    image = _as_input(image)
    hw = _shape_hw(image)
    side = tf.reduce_min(hw)
    offset = (hw - side) // 2
    window = tf.concat([offset, tf.stack([side, side])], axis=0)
    crop = tf.cast(_crop(image, window), tf.float32)
    out = tf.cond(
        side >= size,
        lambda: tf.image.resize(crop, [size, size], method="area"),
        lambda: tf.image.resize(crop, [size, size], method="bicubic"),
    )
    return tf.ensure_shape(_to_uint8(out), [size, size, 3])


def to_float_range(image, *, low: float = -1.0, high: float = 1.0) -> tf.Tensor:
    """Map uint8 pixels [0, 255] linearly to float32 [low, high] (default [-1, 1])."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(f"image: expected uint8, got {image.dtype}")
    if not high > low:
        raise ValueError(f"low/high: expected low < high, got {low}/{high}")
    return tf.cast(image, tf.float32) * ((high - low) / 255.0) + low


def from_float_range(image, *, low: float = -1.0, high: float = 1.0) -> tf.Tensor:
    """The inverse of :func:`to_float_range`: float [low, high] -> uint8 (rounded, clipped)."""
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    if not high > low:
        raise ValueError(f"low/high: expected low < high, got {low}/{high}")
    return _to_uint8((image - low) * (255.0 / (high - low)))
