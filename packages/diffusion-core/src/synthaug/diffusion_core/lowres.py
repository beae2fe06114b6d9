"""The low-res conditioning of the pretrained super-resolution models, as they were trained.

* ADM's upsamplers (guided-diffusion ``SuperResModel``): the low-res image is resized with
  ``F.interpolate(mode="bilinear")`` (half-pixel centres, what ``jax.image.resize``'s
  ``"bilinear"`` computes when upsampling) and concatenated, with no noise;
* DeepFloyd IF-II (diffusers ``IFSuperResolutionPipeline``, the original ``SuperResUNetModel``):
  resized with ``F.interpolate(mode="bilinear", align_corners=True)``, *then* noised with the
  forward process of the ``squaredcos_cap_v2`` (:func:`nichol_cosine_schedule`) schedule at the
  integer step ``noise_level = round(aug_level * 1000)``, which the network also sees.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core.schedules import nichol_cosine_schedule

__all__ = ["if_augment_lowres", "resize_align_corners"]


def _axis_weights(n_in: int, n_out: int):
    if n_out == 1 or n_in == 1:
        src = np.zeros(n_out)
    else:
        src = np.arange(n_out, dtype=np.float64) * (n_in - 1) / (n_out - 1)
    lo = np.clip(np.floor(src).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_align_corners(images: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """Bilinear resize of ``[B, h, w, C]`` with ``align_corners=True`` (PyTorch's semantics)."""
    chex.assert_rank(images, 4)
    hh, ww = (size, size) if isinstance(size, int) else size
    _, h, w, _ = images.shape
    x = jnp.asarray(images, jnp.float32)
    lo, hi, f = _axis_weights(h, hh)
    f = jnp.asarray(f)[None, :, None, None]
    x = x[:, lo] * (1 - f) + x[:, hi] * f
    lo, hi, f = _axis_weights(w, ww)
    f = jnp.asarray(f)[None, None, :, None]
    return x[:, :, lo] * (1 - f) + x[:, :, hi] * f


def if_augment_lowres(
    lowres: jax.Array,
    *,
    rng: jax.Array,
    aug_level: jax.Array | float,
    out_size: int | tuple[int, int],
    num_steps: int = 1000,
) -> jax.Array:
    """IF-II's conditioning input: upsample (align-corners bilinear), then noise at the step.

    Args:
      lowres: ``[B, h, w, C]`` in [-1, 1].
      rng: key of the noise.
      aug_level: scalar or ``[B]`` in [0, 1]; the step is ``round(aug_level * num_steps)``
        (clipped to ``num_steps - 1``), indexing the cumulative alphas directly as diffusers'
        ``add_noise(..., timesteps=noise_level)`` does.
      out_size: the output resolution.

    Returns:
      ``[B, H, W, C]`` float32.
    """
    up = resize_align_corners(lowres, out_size)
    b = up.shape[0]
    level = jnp.broadcast_to(jnp.asarray(aug_level, jnp.float32), (b,))
    step = jnp.clip(jnp.round(level * num_steps).astype(jnp.int32), 0, num_steps - 1)
    ac = jnp.asarray(nichol_cosine_schedule(num_steps).alphas_cumprod, jnp.float32)[step]
    noise = jax.random.normal(rng, up.shape, jnp.float32)
    shape = (b, 1, 1, 1)
    return jnp.sqrt(ac).reshape(shape) * up + jnp.sqrt(1.0 - ac).reshape(shape) * noise
