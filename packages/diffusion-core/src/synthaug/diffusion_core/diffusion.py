"""The continuous-time Gaussian diffusion: forward process, predictions, loss, conditioning.

Pure functions of log-SNR with keyword-only arguments. The forward process is
``z_t = alpha_t x + sigma_t eps`` with ``alpha_t**2 = sigmoid(log_snr(t))``,
``sigma_t**2 = sigmoid(-log_snr(t))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp

from synthaug.diffusion_core.lowres import (
    augment_lowres,
    condition_lowres,
    quantize_aug_level,
    upsample_lowres,
)
from synthaug.diffusion_core.schedules import alpha_sigma

Array = jnp.ndarray

PREDICTION_TYPES = ("eps", "v", "x0")

__all__ = [
    "PREDICTION_TYPES",
    "augment_lowres",
    "check_prediction_type",
    "diffusion_loss",
    "drop_text",
    "eps_and_x0",
    "predict_x0_eps",
    "prediction_target",
    "q_sample",
    "upsample_lowres",
]


def _bcast(a: Array, x: Array) -> Array:
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def check_prediction_type(prediction_type: str) -> None:
    """Raise ValueError unless ``prediction_type`` is one of :data:`PREDICTION_TYPES`."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
        )


def q_sample(*, x: Array, eps: Array, log_snr: Array) -> Array:
    """Sample the forward process: ``z = alpha x + sigma eps``.

    Args:
      x: clean data ``[B, ...]``.
      eps: standard normal noise, same shape as ``x``.
      log_snr: ``[B]`` log-SNR.

    Returns:
      ``z`` with the shape of ``x``.
    """
    chex.assert_equal_shape([x, eps])
    alpha, sigma = alpha_sigma(log_snr)
    return _bcast(alpha, x) * x + _bcast(sigma, x) * eps


def prediction_target(*, x: Array, eps: Array, log_snr: Array, prediction_type: str) -> Array:
    """What the network regresses: ``eps``, ``v = alpha eps - sigma x`` or ``x0``."""
    check_prediction_type(prediction_type)
    if prediction_type == "eps":
        return eps
    if prediction_type == "x0":
        return x
    alpha, sigma = alpha_sigma(log_snr)
    return _bcast(alpha, x) * eps - _bcast(sigma, x) * x


def eps_and_x0(
    prediction: Array, x: Array, *, alpha: Array, sigma: Array, prediction_type: str
) -> tuple[Array, Array]:
    """``(eps, x0)`` implied by a network output at ``x = alpha x0 + sigma eps``.

    The one conversion of ``"eps"``, ``"v"`` and ``"x0"`` predictions, used by training
    (:func:`predict_x0_eps`) and by the samplers (with a discrete schedule's coefficients).
    Each is computed directly from the prediction (not one from the other) so that neither
    loses precision where ``alpha`` or ``sigma`` is tiny.

    Args:
      prediction: the network output, shape of ``x``.
      x: the noisy sample.
      alpha, sigma: scalars or arrays broadcastable to ``x``, ``alpha**2 + sigma**2 = 1``.
      prediction_type: ``"eps"``, ``"v"`` or ``"x0"``.

    Returns:
      ``(eps, x0)``, each with the shape of ``x``. (For eps-prediction at very low SNR,
      ``x0`` divides by a small alpha; samplers clip or threshold it.)
    """
    check_prediction_type(prediction_type)
    if prediction_type == "eps":
        return prediction, (x - sigma * prediction) / alpha
    if prediction_type == "x0":
        return (x - alpha * prediction) / sigma, prediction
    # v = alpha eps - sigma x0  =>  eps = sigma x + alpha v,  x0 = alpha x - sigma v.
    return sigma * x + alpha * prediction, alpha * x - sigma * prediction


def predict_x0_eps(
    *, z: Array, model_output: Array, log_snr: Array, prediction_type: str
) -> tuple[Array, Array]:
    """Turn a network output into ``(x0_hat, eps_hat)`` at a ``[B]`` log-SNR.

    Args:
      z: the noisy input ``[B, ...]``.
      model_output: the network output, same shape.
      log_snr: ``[B]``.
      prediction_type: ``"eps"``, ``"v"`` or ``"x0"``.

    Returns:
      ``(x0_hat, eps_hat)`` (see :func:`eps_and_x0`).
    """
    check_prediction_type(prediction_type)
    chex.assert_equal_shape([z, model_output])
    alpha, sigma = alpha_sigma(log_snr)
    eps, x0 = eps_and_x0(
        model_output,
        z,
        alpha=_bcast(alpha, z),
        sigma=_bcast(sigma, z),
        prediction_type=prediction_type,
    )
    return x0, eps


def drop_text(
    text_emb: Array, text_mask: Array, *, rng: jax.Array, p_uncond: float
) -> tuple[Array, Array]:
    """Classifier-free guidance training: zero the text (embedding and mask) with prob. p.

    Args:
      text_emb: ``[B, L, D]``.
      text_mask: ``[B, L]`` bool.
      rng: key.
      p_uncond: probability of dropping a caption.

    Returns:
      ``(text_emb, text_mask)`` with the dropped rows zeroed / all False.
    """
    chex.assert_rank(text_emb, 3)
    chex.assert_shape(text_mask, text_emb.shape[:2])
    keep = jax.random.uniform(rng, (text_emb.shape[0],)) >= p_uncond
    return text_emb * keep[:, None, None].astype(text_emb.dtype), text_mask & keep[:, None]


def diffusion_loss(
    apply_fn: Callable[..., Array],
    params: Any,
    batch: Mapping[str, Array],
    *,
    rng: jax.Array,
    log_snr_fn: Callable[[Array], Array],
    prediction_type: str = "eps",
    p_uncond: float = 0.1,
    is_sr: bool = False,
    aug_schedule: str = "cosine",
    aug_level_range: tuple[float, float] = (0.0, 1.0),
    resize_method: str = "bilinear",
    aug_order: str = "noise_then_resize",
    label_dropout: float = 0.0,
) -> tuple[Array, dict[str, Array]]:
    """The Imagen training loss: squared error of the prediction at a uniform continuous t.

    Args:
      apply_fn: ``apply_fn(params, x, time, text_emb, text_mask, lowres=, aug_level=, rng=)``
        (see :func:`synthaug.diffusion_core.train.make_train_step`).
      params: network parameters.
      batch: ``image [B,H,W,C]`` in [-1, 1]; ``text_emb [B,L,D]`` and ``text_mask [B,L]``
        (optional for unconditional models); ``lowres [B,h,w,C]`` for SR models.
      rng: key.
      log_snr_fn: the noise schedule.
      prediction_type: ``"eps"`` (default), ``"v"`` or ``"x0"``; the loss is the MSE of that
        target.
      p_uncond: probability of dropping the text (classifier-free guidance training).
      is_sr: super-resolution model: ``batch["lowres"]`` becomes the model's ``lowres``
        through :func:`~synthaug.diffusion_core.condition_lowres` (the function the samplers'
        cascade uses) at a random level, passed as ``aug_level``.
      aug_schedule: the augmentation schedule's name.
      aug_level_range: training augmentation levels are uniform in this range; with
        ``aug_order="resize_then_noise"`` they are quantised to the integer steps
        (:func:`~synthaug.diffusion_core.quantize_aug_level`), as IF-II drew them.
      resize_method: how the low-res image is upsampled.
      aug_order: ``"noise_then_resize"`` (Imagen), ``"resize_then_noise"`` (DeepFloyd IF-II)
        or ``"resize_only"`` (ADM's upsamplers); see :mod:`synthaug.diffusion_core.lowres`.
      label_dropout: for a class-conditional model (``batch["labels"] [B]``, passed to
        ``apply_fn`` as ``labels=``): the probability of replacing an example's label by -1,
        "no label" (classifier-free guidance training).

    Returns:
      ``(loss, aux)`` where ``aux`` holds the per-example losses and the sampled ``t``.
    """
    check_prediction_type(prediction_type)
    x = batch["image"]
    chex.assert_rank(x, 4)
    b = x.shape[0]
    k_t, k_eps, k_drop, k_aug, k_augnoise, k_dropout = jax.random.split(rng, 6)
    t = jax.random.uniform(k_t, (b,), jnp.float32)
    log_snr = log_snr_fn(t)
    eps = jax.random.normal(k_eps, x.shape, jnp.float32)
    x = x.astype(jnp.float32)
    z = q_sample(x=x, eps=eps, log_snr=log_snr)
    text_emb, text_mask = batch.get("text_emb"), batch.get("text_mask")
    if text_emb is not None and p_uncond > 0:
        text_emb, text_mask = drop_text(text_emb, text_mask, rng=k_drop, p_uncond=p_uncond)
    lowres = aug_level = None
    if is_sr:
        lo, hi = aug_level_range
        aug_level = jax.random.uniform(k_aug, (b,), jnp.float32, lo, hi)
        if aug_order == "resize_then_noise":
            aug_level = quantize_aug_level(aug_level)
        lowres = condition_lowres(
            batch["lowres"].astype(jnp.float32),
            rng=k_augnoise,
            aug_level=aug_level,
            out_size=x.shape[1:3],
            order=aug_order,
            aug_schedule=aug_schedule,
            resize_method=resize_method,
        )
    kw = {}
    if "labels" in batch:
        labels = jnp.asarray(batch["labels"], jnp.int32)
        if label_dropout > 0:
            k_drop, k_label = jax.random.split(k_drop)
            drop = jax.random.uniform(k_label, (b,)) < label_dropout
            labels = jnp.where(drop, -1, labels)
        kw["labels"] = labels
    out = apply_fn(
        params, z, t, text_emb, text_mask, lowres=lowres, aug_level=aug_level, rng=k_dropout, **kw
    )
    target = prediction_target(x=x, eps=eps, log_snr=log_snr, prediction_type=prediction_type)
    if out.shape[-1] == 2 * target.shape[-1]:
        # A learned-range variance model (ADM, DeepFloyd IF): the prediction channels get this
        # loss; the variance channels are not trained by it and keep their pretrained values.
        out = out[..., : target.shape[-1]]
    per_example = jnp.mean(jnp.square(out.astype(jnp.float32) - target), axis=(1, 2, 3))
    return jnp.mean(per_example), {"per_example_loss": per_example, "t": t}
