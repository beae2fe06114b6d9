"""Host images to model input: resize, the configured augmentation, normalisation."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import ml_collections

from synthaug.classifiers import augment

__all__ = ["prepare_images"]


def prepare_images(
    images: jax.Array,
    config: ml_collections.ConfigDict,
    *,
    key: jax.Array | None = None,
    train: bool = False,
) -> jax.Array:
    """uint8 ``[B, H, W, 3]`` images -> normalised float32 model input.

    Resizes (bilinear, antialiased) to ``config.image_size`` when the side differs. With
    ``train=True`` applies, in order: RandAugment (``config.randaugment.num_layers > 0``),
    pad-crop / flip (``config.augment``), normalisation, random erasing. Float inputs are
    taken as already normalised (no RandAugment).

    Args:
      images: uint8 or float ``[B, H, W, 3]``.
      config: a recipe config.
      key: PRNG key (required for ``train=True``).
      train: apply the training augmentation.

    Returns:
      float32 ``[B, image_size, image_size, 3]``.
    """
    chex.assert_rank(images, 4)
    if images.shape[-1] != 3:
        raise ValueError(f"images must be RGB [B, H, W, 3], got shape {images.shape}")
    is_uint8 = images.dtype == jnp.uint8
    x = images.astype(jnp.float32)
    size = int(config.image_size)
    if x.shape[1] != size or x.shape[2] != size:
        x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear", antialias=True)
    if train:
        if key is None:
            raise ValueError("prepare_images(train=True) needs a PRNG key")
        k_ra, k_crop, k_flip, k_erase = jax.random.split(key, 4)
        ra = config.randaugment
        if ra.num_layers > 0:
            if not is_uint8:
                raise ValueError("RandAugment needs uint8 images in [0, 255]")
            x = augment.rand_augment(
                k_ra,
                x,
                num_layers=int(ra.num_layers),
                magnitude=float(ra.magnitude),
                magnitude_std=float(ra.magnitude_std),
            )
        if config.augment in ("pad_crop", "pad_crop_flip"):
            x = augment.random_pad_crop(k_crop, x, pad=max(size // 8, 1))
        if config.augment in ("flip", "pad_crop_flip"):
            x = augment.random_flip(k_flip, x)
    if is_uint8:
        mean = jnp.asarray(config.mean, jnp.float32) * 255.0
        std = jnp.asarray(config.std, jnp.float32) * 255.0
        x = (x - mean) / std
    if train and config.random_erase_prob > 0:
        x = augment.random_erasing(k_erase, x, prob=float(config.random_erase_prob))
    return x
