"""Model predictions: parameterizations, classifier-free guidance and thresholding.

A model function is ``model_fn(x, t, cond) -> prediction`` with ``x`` of shape ``[B, ...]``,
``t`` a ``[B]`` float32 continuous time and ``cond`` a dict of arrays with leading batch
dimension. The prediction is ``eps`` (the noise), ``v`` (``alpha eps - sigma x0``) or ``x0``
(the clean sample), for ``x = alpha x0 + sigma eps``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core.diffusion import PREDICTION_TYPES, eps_and_x0

Array = jax.Array
ModelFn = Callable[[Array, Array, Mapping[str, Array]], Array]

THRESHOLDING_METHODS = (None, "static", "dynamic")
DEFAULT_PERCENTILE = 99.5

__all__ = [
    "DEFAULT_PERCENTILE",
    "PREDICTION_TYPES",
    "THRESHOLDING_METHODS",
    "abs_percentile",
    "dynamic_threshold",
    "eps_and_x0",
    "guided_prediction",
    "static_threshold",
    "threshold",
    "unconditional_cond",
]


def check_thresholding(thresholding: str | None, percentile) -> None:
    if thresholding not in THRESHOLDING_METHODS:
        raise ValueError(
            f"thresholding must be one of {THRESHOLDING_METHODS}, got {thresholding!r}"
        )
    if isinstance(percentile, int | float) and not 0.0 < percentile <= 100.0:
        raise ValueError(f"threshold_percentile must lie in (0, 100], got {percentile}")


def static_threshold(x0: Array) -> Array:
    """Clip ``x0`` to ``[-1, 1]``."""
    return jnp.clip(x0, -1.0, 1.0)


# Bit pattern of +inf: the int32 views of non-negative float32 values up to +inf are ordered
# like the values themselves.
_INF_BITS = 0x7F800000
_SEARCH_STEPS = 31  # ceil(log2(_INF_BITS + 1)) halvings of [0, _INF_BITS]


def _kth_largest(bits: Array, k: int) -> Array:
    """Per row, the ``k``-th largest of ``[B, N]`` non-negative float32 values given as int32 bits.

    A bisection over the bit patterns: the answer is the largest ``b`` with
    ``#(bits >= b) >= k``, found with 31 counting passes over the row (no sort; exact).
    """
    rows = bits.shape[0]

    def body(_, bounds):
        lo, hi = bounds  # invariant: #(bits >= lo) >= k and #(bits >= hi) < k
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(bits >= mid[:, None], axis=1, dtype=jnp.int32) >= k
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo = jnp.zeros((rows,), jnp.int32)
    hi = jnp.full((rows,), _INF_BITS + 1, jnp.int32)
    lo, _ = jax.lax.fori_loop(0, _SEARCH_STEPS, body, (lo, hi))
    return jax.lax.bitcast_convert_type(lo, jnp.float32)


def abs_percentile(x: Array, *, percentile: float | Array = DEFAULT_PERCENTILE) -> Array:
    """The ``percentile``-th percentile of ``|x|`` over each sample (numpy's ``"linear"``).

    With a concrete ``percentile`` (a Python number or a concrete array) the two order
    statistics around the percentile's position ``p / 100 * (N - 1)`` in the sorted sample
    are selected exactly without sorting (a bisection over float32 bit patterns: 31 counting
    passes, plus one pass for the upper neighbour), then interpolated linearly as
    :func:`numpy.percentile` does. A traced ``percentile`` (e.g. an argument of a jitted
    function) falls back to :func:`jax.numpy.percentile`, which sorts each sample.

    Args:
      x: ``[B, ...]`` samples (any float dtype; computed in float32).
      percentile: in (0, 100].

    Returns:
      ``[B]`` float32 percentiles; NaN for a sample that contains a NaN.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have a batch dimension and sample dimensions, got {x.shape}")
    flat = jnp.abs(x.reshape(x.shape[0], -1)).astype(jnp.float32)
    if isinstance(percentile, jax.core.Tracer):
        return jnp.percentile(flat, jnp.asarray(percentile, jnp.float32), axis=1)
    q = float(percentile)
    if not 0.0 < q <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100], got {q}")
    return _abs_percentile_static(flat, percentile=q)


@functools.partial(jax.jit, static_argnames="percentile")
def _abs_percentile_static(flat: Array, *, percentile: float) -> Array:
    """:func:`abs_percentile` of ``[B, N]`` non-negative float32 ``flat``, static percentile."""
    n = flat.shape[1]
    position = (percentile / 100.0) * (n - 1)  # numpy's virtual index for "linear" (float64)
    below = min(int(np.floor(position)), n - 1)
    gamma = position - below
    bits = jax.lax.bitcast_convert_type(flat, jnp.int32)
    k = n - below  # the order statistic at sorted position `below` is the k-th largest
    lower = _kth_largest(bits, k)
    if gamma == 0.0:
        value = lower
    else:
        # The next order statistic: the smallest value above `lower` if exactly k - 1 values
        # exceed it, else (ties) `lower` itself.
        above = flat > lower[:, None]
        n_above = jnp.sum(above, axis=1, dtype=jnp.int32)
        next_up = jnp.min(jnp.where(above, flat, jnp.inf), axis=1)
        upper = jnp.where(n_above == k - 1, next_up, lower)
        diff = upper - lower
        g = jnp.float32(gamma)
        # numpy's _lerp: from the nearer end, so that gamma = 1 gives `upper` exactly.
        value = lower + diff * g if gamma < 0.5 else upper - diff * (jnp.float32(1.0) - g)
    return jnp.where(jnp.any(jnp.isnan(flat), axis=1), jnp.nan, value)


def dynamic_threshold(x0: Array, *, percentile: float | Array = DEFAULT_PERCENTILE) -> Array:
    """Imagen's dynamic thresholding of a batch of predicted clean samples.

    ``s`` is the ``percentile``-th percentile of ``|x0|`` over each sample
    (:func:`abs_percentile`: numpy's linear interpolation, selected exactly without a sort when
    ``percentile`` is concrete), ``s = max(s, 1)``; the sample is clipped to ``[-s, s]`` and
    divided by ``s``.

    Args:
      x0: ``[B, ...]`` predicted clean samples.
      percentile: in (0, 100]; 99.5 in Imagen. Pass a Python number (static under ``jit``)
        for the fast exact selection.

    Returns:
      The thresholded samples, same shape and dtype.
    """
    if x0.ndim < 2:
        raise ValueError(f"x0 must have a batch dimension and sample dimensions, got {x0.shape}")
    s = abs_percentile(x0, percentile=percentile)
    s = jnp.maximum(s, 1.0).astype(x0.dtype)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -s, s) / s


def threshold(
    x0: Array, *, method: str | None, percentile: float | Array = DEFAULT_PERCENTILE
) -> Array:
    """Apply ``method`` (``None``, ``"static"`` or ``"dynamic"``) to ``x0``."""
    check_thresholding(method, percentile)
    if method is None:
        return x0
    if method == "static":
        return static_threshold(x0)
    return dynamic_threshold(x0, percentile=percentile)


def unconditional_cond(cond: Mapping[str, Array]) -> dict[str, Array]:
    """The null conditioning: ``text_emb`` zeroed, ``text_mask`` all False, the rest unchanged.

    A model trained with another null condition supplies it: with ``cond["null_text_emb"]``
    (e.g. DeepFloyd IF's embedding of the empty prompt) ``text_emb`` becomes that embedding
    and ``text_mask`` becomes ``cond["null_text_mask"]`` (all True if absent).
    """
    if "text_emb" not in cond:
        raise KeyError(
            f"classifier-free guidance needs cond['text_emb'] to drop; cond has keys {sorted(cond)}"
        )
    out = dict(cond)
    if "null_text_emb" in cond:
        null = jnp.asarray(cond["null_text_emb"])
        if null.shape != jnp.shape(cond["text_emb"]):
            raise ValueError(
                f"cond['null_text_emb'] has shape {null.shape}, cond['text_emb'] "
                f"{jnp.shape(cond['text_emb'])}"
            )
        out["text_emb"] = null.astype(jnp.asarray(cond["text_emb"]).dtype)
        if "text_mask" in cond:
            mask = cond.get("null_text_mask", jnp.ones_like(cond["text_mask"], dtype=bool))
            out["text_mask"] = jnp.asarray(mask, bool)
        return out
    out["text_emb"] = jnp.zeros_like(cond["text_emb"])
    if "text_mask" in cond:
        out["text_mask"] = jnp.zeros_like(cond["text_mask"], dtype=bool)
    return out


def guided_prediction(
    model_fn: ModelFn,
    x: Array,
    t: Array,
    cond: Mapping[str, Array],
    *,
    guidance_scale: float | Array,
    guided_channels: int | None = None,
) -> Array:
    """Classifier-free guidance in one network call on a doubled batch.

    The first half of the doubled batch is conditional, the second half has the null
    conditioning (:func:`unconditional_cond`); the result is
    ``w * pred_cond + (1 - w) * pred_uncond`` (Imagen's convention, ``w = 1`` is no guidance).
    Combining the raw predictions is the same as combining the implied ``eps`` for all three
    parameterizations, because each is affine in the prediction with the same ``x``-term for
    both halves.

    Args:
      model_fn: ``model_fn(x, t, cond) -> prediction``.
      x: ``[B, ...]`` noisy samples.
      t: ``[B]`` times.
      cond: conditioning dict with leading batch dimension ``B``; must hold ``text_emb``.
      guidance_scale: ``w``.
      guided_channels: guide only the first this many channels (the prediction) and take the
        rest (a learned-range variance output) from the conditional half, as DeepFloyd IF's
        pipeline does; ``None`` guides every channel.

    Returns:
      ``[B, ...]`` guided prediction (float32).
    """
    b = x.shape[0]
    uncond = unconditional_cond(cond)
    x2 = jnp.concatenate([x, x], axis=0)
    t2 = jnp.concatenate([t, t], axis=0)
    cond2 = {k: jnp.concatenate([jnp.asarray(cond[k]), jnp.asarray(uncond[k])]) for k in cond}
    out = jnp.asarray(model_fn(x2, t2, cond2), jnp.float32)
    channels = x.shape[-1] * (1 if guided_channels is None else 2)
    if out.shape != (*x2.shape[:-1], channels):
        raise ValueError(
            f"model_fn returned shape {out.shape}, expected {(*x2.shape[:-1], channels)}"
        )
    pred_c, pred_u = out[:b], out[b:]
    w = jnp.asarray(guidance_scale, jnp.float32)
    if guided_channels is None:
        return w * pred_c + (1.0 - w) * pred_u
    n = guided_channels
    guided = w * pred_c[..., :n] + (1.0 - w) * pred_u[..., :n]
    return jnp.concatenate([guided, pred_c[..., n:]], axis=-1)
