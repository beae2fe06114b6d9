"""The low-res conditioning of super-resolution models, as each family was trained.

One definition, :func:`condition_lowres`, serves training (:func:`~synthaug.diffusion_core.
diffusion_loss`, random levels) and sampling (the samplers' cascade, a fixed level). Its
``order`` is the preset's ``diffusion.aug_order``:

* ``"noise_then_resize"`` (Imagen, the default): the low-res image is diffused to time
  ``aug_level`` with the continuous log-SNR of ``aug_schedule`` at its own resolution, then
  resized to the output resolution (:func:`augment_lowres`);
* ``"resize_then_noise"`` (DeepFloyd IF-II; the original ``SuperResUNetModel.forward`` and
  diffusers' ``IFSuperResolutionPipeline``): resized first (``F.interpolate(mode="bilinear",
  align_corners=True)``: ``resize_method="bilinear_align_corners"``), *then* noised with the
  forward process of the discrete ``aug_schedule`` (``squaredcos_cap_v2``:
  ``"nichol_cosine"``) at the integer step :func:`aug_step` ``= round(aug_level * 1000)``,
  the step IF-II's noise-level embedding also sees (``aug_level`` 0.25 is diffusers'
  ``noise_level=250``). In training IF drew the step uniformly from 0..999; the training
  levels here are quantised to steps the same way (:func:`quantize_aug_level`);
* ``"resize_only"`` (ADM's upsamplers, guided-diffusion ``SuperResModel``): resized with
  ``F.interpolate(mode="bilinear")`` (half-pixel centres, what ``jax.image.resize``'s
  ``"bilinear"`` computes when upsampling) and concatenated, with no noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core.schedules import alpha_sigma, discrete_schedule, get_log_snr_fn

Array = jax.Array

__all__ = [
    "AUG_ORDERS",
    "RESIZE_METHODS",
    "aug_step",
    "augment_lowres",
    "check_lowres_settings",
    "condition_lowres",
    "if_augment_lowres",
    "lowres_settings",
    "quantize_aug_level",
    "resize_align_corners",
    "upsample_lowres",
]

AUG_ORDERS = ("noise_then_resize", "resize_then_noise", "resize_only")
RESIZE_METHODS = (  # jax.image.resize's methods and PyTorch's align-corners bilinear
    "bilinear",
    "bilinear_align_corners",
    "nearest",
    "linear",
    "trilinear",
    "triangle",
    "cubic",
    "bicubic",
    "tricubic",
    "lanczos3",
    "lanczos5",
)
_DEFAULTS = {
    "aug_order": "noise_then_resize",
    "aug_schedule": "cosine",
    "resize_method": "bilinear",
}


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


def upsample_lowres(lowres: Array, *, size: int | tuple[int, int], method: str = "bilinear"):
    """Resize a low-res batch ``[B, h, w, C]`` to ``[B, H, W, C]``.

    ``method`` is a ``jax.image.resize`` method or ``"bilinear_align_corners"``
    (:func:`resize_align_corners`).
    """
    chex.assert_rank(lowres, 4)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if method == "bilinear_align_corners":
        return resize_align_corners(lowres, hw).astype(lowres.dtype)
    b, _, _, c = lowres.shape
    return jax.image.resize(lowres, (b, *hw, c), method=method).astype(lowres.dtype)


def aug_step(aug_level: Array | float, num_steps: int = 1000) -> Array:
    """The integer augmentation step of a level in [0, 1]: ``round(level * N)`` clipped to
    ``0 .. N-1`` (int32, the shape of ``aug_level``). IF-II's noise and its noise-level
    embedding both use it."""
    level = jnp.asarray(aug_level, jnp.float32)
    return jnp.clip(jnp.round(level * num_steps), 0, num_steps - 1).astype(jnp.int32)


def quantize_aug_level(level: Array, num_steps: int = 1000) -> Array:
    """``floor(level * N) / N``: a uniform level in ``[lo, hi)`` becomes a uniform integer
    step (IF-II drew its training step as ``int(uniform[0, 1) * 1000)``)."""
    level = jnp.asarray(level, jnp.float32)
    step = jnp.clip(jnp.floor(level * num_steps), 0, num_steps - 1)
    return step / num_steps


def _levels(aug_level, b: int) -> Array:
    aug_level = jnp.asarray(aug_level, jnp.float32)
    if aug_level.ndim:
        chex.assert_shape(aug_level, (b,))
    return jnp.broadcast_to(aug_level, (b,))


def augment_lowres(
    lowres: Array,
    *,
    rng: jax.Array,
    aug_level: Array,
    out_size: int | tuple[int, int],
    log_snr_fn: Callable[[Array], Array] | None = None,
    method: str = "bilinear",
    noise: Array | None = None,
) -> Array:
    """Imagen's noise-conditioning augmentation: noise the low-res image at ``aug_level``,
    then upsample (:func:`condition_lowres`'s ``"noise_then_resize"``).

    The low-res image (at its own resolution) is diffused to time ``aug_level`` with the
    variance-preserving forward process of ``log_snr_fn`` (cosine by default), then resized to
    the output resolution.

    Args:
      lowres: ``[B, h, w, C]`` in [-1, 1].
      rng: key for the noise.
      aug_level: ``[B]`` levels in [0, 1], or one level for the whole batch.
      out_size: the output resolution.
      log_snr_fn: the augmentation schedule.
      method: the resize method (see :func:`upsample_lowres`).
      noise: the noise ``[B, h, w, C]`` (default: drawn from ``rng``).

    Returns:
      ``[B, H, W, C]``: the upsampled, augmented low-res image.
    """
    chex.assert_rank(lowres, 4)
    level = _levels(aug_level, lowres.shape[0])
    log_snr_fn = log_snr_fn or get_log_snr_fn("cosine")
    if noise is None:
        noise = jax.random.normal(rng, lowres.shape, lowres.dtype)
    alpha, sigma = alpha_sigma(log_snr_fn(level))
    shape = (-1, 1, 1, 1)
    noisy = alpha.reshape(shape) * lowres + sigma.reshape(shape) * noise
    return upsample_lowres(noisy.astype(lowres.dtype), size=out_size, method=method)


def condition_lowres(
    lowres: Array,
    *,
    rng: jax.Array | None,
    aug_level: Array | float,
    out_size: int | tuple[int, int],
    order: str = "noise_then_resize",
    aug_schedule: str = "cosine",
    resize_method: str = "bilinear",
    num_steps: int = 1000,
    noise: Array | None = None,
) -> Array:
    """A super-resolution model's conditioning input, as the model was trained.

    Args:
      lowres: ``[B, h, w, C]`` in [-1, 1].
      rng: key of the noise (unused by ``"resize_only"`` or with ``noise``).
      aug_level: ``[B]`` levels in [0, 1], or one level for the whole batch.
      out_size: the output resolution.
      order: ``"noise_then_resize"``, ``"resize_then_noise"`` or ``"resize_only"`` (see the
        module docstring).
      aug_schedule: the augmentation schedule's name (continuous log-SNR for
        ``"noise_then_resize"``, :func:`~synthaug.diffusion_core.discrete_schedule` on
        ``num_steps`` steps for ``"resize_then_noise"``).
      resize_method: see :func:`upsample_lowres`.
      num_steps: the discrete schedule's length (``"resize_then_noise"``).
      noise: the noise, at the low resolution (``"noise_then_resize"``) or at the output
        resolution (``"resize_then_noise"``); default: drawn from ``rng``.

    Returns:
      ``[B, H, W, C]`` float32.

    Raises:
      ValueError: an unknown order or resize method.
    """
    check_lowres_settings(order=order, resize_method=resize_method)
    chex.assert_rank(lowres, 4)
    lowres = jnp.asarray(lowres, jnp.float32)
    if order == "noise_then_resize":
        return augment_lowres(
            lowres,
            rng=rng,
            aug_level=aug_level,
            out_size=out_size,
            log_snr_fn=get_log_snr_fn(aug_schedule),
            method=resize_method,
            noise=noise,
        )
    up = upsample_lowres(lowres, size=out_size, method=resize_method)
    if order == "resize_only":
        return up
    step = aug_step(_levels(aug_level, up.shape[0]), num_steps)
    table = discrete_schedule(aug_schedule, num_steps).alphas_cumprod
    ac = jnp.asarray(table, jnp.float32)[step].reshape(-1, 1, 1, 1)
    if noise is None:
        noise = jax.random.normal(rng, up.shape, jnp.float32)
    return jnp.sqrt(ac) * up + jnp.sqrt(1.0 - ac) * noise


def if_augment_lowres(
    lowres: jax.Array,
    *,
    rng: jax.Array,
    aug_level: jax.Array | float,
    out_size: int | tuple[int, int],
    num_steps: int = 1000,
    noise: Array | None = None,
) -> jax.Array:
    """IF-II's conditioning input: :func:`condition_lowres` with ``"resize_then_noise"``,
    align-corners bilinear resizing and the ``"nichol_cosine"`` (``squaredcos_cap_v2``)
    schedule."""
    return condition_lowres(
        lowres,
        rng=rng,
        aug_level=aug_level,
        out_size=out_size,
        order="resize_then_noise",
        aug_schedule="nichol_cosine",
        resize_method="bilinear_align_corners",
        num_steps=num_steps,
        noise=noise,
    )


def check_lowres_settings(*, order: str, resize_method: str, where: str = "") -> None:
    """Raise a ValueError naming the setting unless ``order`` and ``resize_method`` are known."""
    if order not in AUG_ORDERS:
        raise ValueError(f"{where}aug_order must be one of {AUG_ORDERS}, got {order!r}")
    if resize_method not in RESIZE_METHODS:
        raise ValueError(
            f"{where}resize_method must be one of {RESIZE_METHODS}, got {resize_method!r}"
        )


def lowres_settings(config: Mapping[str, Any] | Any) -> dict[str, str]:
    """The :func:`condition_lowres` keywords of a config: ``order``, ``aug_schedule`` and
    ``resize_method`` from its ``diffusion`` section (``aug_order``, ``aug_schedule``,
    ``resize_method``; defaults for keys a config lacks), checked.

    Args:
      config: a full preset config or its ``diffusion`` section.
    """
    d = config["diffusion"] if "diffusion" in config else config
    get = d.get if hasattr(d, "get") else (lambda k, v: getattr(d, k, v))
    out = {
        "order": str(get("aug_order", _DEFAULTS["aug_order"])),
        "aug_schedule": str(get("aug_schedule", _DEFAULTS["aug_schedule"])),
        "resize_method": str(get("resize_method", _DEFAULTS["resize_method"])),
    }
    check_lowres_settings(
        order=out["order"], resize_method=out["resize_method"], where="diffusion."
    )
    return out
