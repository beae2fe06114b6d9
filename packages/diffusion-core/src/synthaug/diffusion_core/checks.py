"""Shape checks of the inputs of the U-Nets (chex assertions reported as ValueError)."""

from __future__ import annotations

import chex
import jax.numpy as jnp

Array = jnp.ndarray


def _chex(name: str, fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except AssertionError as e:
        raise ValueError(f"{name}: {e}") from None


def check_unet_inputs(
    x: Array,
    time: Array,
    text_emb: Array | None,
    text_mask: Array | None,
    *,
    lowres: Array | None,
    aug_level: Array | None,
    in_channels: int,
    text_dim: int | None,
    lowres_channels: int,
    image_size: int | None = None,
) -> None:
    """Check the inputs of a U-Net call; raise ValueError naming the first bad input.

    Args:
      x: noisy image ``[B, H, W, in_channels]`` (float).
      time: ``[B]`` continuous time.
      text_emb: ``[B, L, text_dim]`` or None (required iff ``text_dim`` is set).
      text_mask: ``[B, L]`` bool.
      lowres: ``[B, H, W, lowres_channels]`` upsampled low-res image (iff ``lowres_channels``).
      aug_level: ``[B]`` noise-augmentation level (SR models).
      in_channels, text_dim, lowres_channels, image_size: what the model expects.
    """
    _chex("x", chex.assert_rank, x, 4)
    _chex("x", chex.assert_type, x, float)
    b, h, w, c = x.shape
    if c != in_channels:
        raise ValueError(f"x: expected {in_channels} channels, got shape {x.shape}")
    if image_size is not None and (h, w) != (image_size, image_size):
        raise ValueError(f"x: expected {image_size}x{image_size} images, got shape {x.shape}")
    _chex("time", chex.assert_shape, time, (b,))
    _chex("time", chex.assert_type, time, float)
    if text_dim is None:
        if text_emb is not None:
            raise ValueError("text_emb: this model is unconditional (text_dim is None), got text")
    else:
        if text_emb is None or text_mask is None:
            raise ValueError(
                f"text_emb/text_mask: this model needs text [B, L, {text_dim}] and a [B, L] mask"
            )
        _chex("text_emb", chex.assert_rank, text_emb, 3)
        _chex("text_emb", chex.assert_shape, text_emb, (b, None, text_dim))
        _chex("text_mask", chex.assert_shape, text_mask, (b, text_emb.shape[1]))
        _chex("text_mask", chex.assert_type, text_mask, bool)
    if lowres_channels:
        if lowres is None or aug_level is None:
            raise ValueError(
                "lowres/aug_level: a super-resolution model needs the upsampled low-res image "
                f"[B, {h}, {w}, {lowres_channels}] and the augmentation level [B]"
            )
        _chex("lowres", chex.assert_shape, lowres, (b, h, w, lowres_channels))
        _chex("aug_level", chex.assert_shape, aug_level, (b,))
    elif lowres is not None:
        raise ValueError("lowres: this model is not a super-resolution model, got lowres")
