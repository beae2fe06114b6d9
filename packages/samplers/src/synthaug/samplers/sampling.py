"""DDPM ancestral sampling (with the log-variance mix) and DDIM, each one compiled function.

Both samplers respace the schedule on the host (float64 NumPy), then run every step inside
one ``jax.jit``-compiled ``jax.lax.scan``: no Python work per step. The noise is drawn for
the full (global) batch from the key, so a given key gives the same samples whether the
batch lives on one device or is sharded over several.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from synthaug.diffusion_core.diffusion import check_prediction_type, eps_and_x0
from synthaug.diffusion_core.schedules import DiscreteSchedule
from synthaug.samplers.coefficients import (
    DDIMCoefficients,
    DDPMCoefficients,
    ddim_coefficients,
    ddim_step,
    ddpm_coefficients,
    ddpm_posterior,
)
from synthaug.samplers.guidance import (
    DEFAULT_PERCENTILE,
    ModelFn,
    check_thresholding,
    guided_prediction,
    threshold,
)
from synthaug.samplers.respacing import kept_steps, respace

Array = jax.Array

__all__ = ["VARIANCE_TYPES", "Trajectory", "ddim_sample", "ddpm_sample"]

VARIANCE_TYPES = ("fixed", "learned_range")


class Trajectory(NamedTuple):
    """Per-step values of a sampling run, in sampling order (noisiest step first).

    Attributes:
      x: ``[K, *shape]`` the sample after each step (the last entry is the output).
      x0: ``[K, *shape]`` the (thresholded) clean-sample prediction used at each step.
    """

    x: Array
    x0: Array


def ddpm_sample(
    model_fn: ModelFn,
    schedule: DiscreteSchedule,
    shape: Sequence[int],
    rng: Array,
    *,
    cond: Mapping[str, Any] | None = None,
    guidance_scale: float | Array = 1.0,
    log_var_mix: float | Array = 0.0,
    variance: str = "fixed",
    prediction_type: str = "eps",
    thresholding: str | None = None,
    threshold_percentile: float | Array = DEFAULT_PERCENTILE,
    num_steps: int | Sequence[int] | None = None,
    noise: Array | None = None,
    sharding: jax.sharding.Sharding | None = None,
    return_trajectory: bool = False,
) -> Array | tuple[Array, Trajectory]:
    """DDPM ancestral sampling with the log-variance mix.

    Each step draws ``x_{k-1} ~ N(mu(x_k, x0_hat), exp(v log beta_k + (1 - v) log
    beta_tilde_k))``, where ``x0_hat`` is the (guided, thresholded) clean-sample prediction.

    Args:
      model_fn: ``model_fn(x, t, cond) -> prediction``. Wrap parameters with
        ``jax.tree_util.Partial(fn, params)`` (called as ``fn(params, x, t, cond)``) so that
        they are traced arguments rather than compiled-in constants; the compiled function is
        cached per ``model_fn`` (by equality), shape and static options.
      schedule: the model's full discrete schedule.
      shape: output shape ``[B, ...]`` (e.g. ``[B, H, W, C]``).
      rng: a ``jax.random`` key (may be ``None`` when ``noise`` is given).
      cond: conditioning dict, arrays with leading dimension ``B`` (``text_emb``,
        ``text_mask``, ``lowres``, ``aug_level``, ...). Guidance needs ``text_emb``.
      guidance_scale: classifier-free guidance weight ``w`` (1 = off: one call on batch B;
        otherwise one call on a doubled batch of 2B).
      log_var_mix: ``v`` in [0, 1]; 0 is the posterior variance, 1 is ``beta``.
      variance: ``"fixed"`` (the ``log_var_mix``) or ``"learned_range"``: the model returns
        twice the channels of ``x``, the prediction then its variance output ``v`` in
        [-1, 1], and each step uses the per-element mix ``(v + 1) / 2`` (ADM, DeepFloyd IF);
        with guidance only the prediction is guided, ``v`` comes from the conditional call.
      prediction_type: ``"eps"``, ``"v"`` or ``"x0"``.
      thresholding: ``None``, ``"static"`` (clip ``x0_hat`` to [-1, 1]) or ``"dynamic"``.
      threshold_percentile: percentile for dynamic thresholding, in (0, 100]; a concrete
        number (a static option of the compiled sampler: each value compiles once).
      num_steps: ``None`` (every step), a number of evenly spaced steps, or explicit kept
        step indices; the schedule is respaced with betas rebuilt from ``alpha_bar``.
      noise: optional ``[K + 1, *shape]`` standard normal draws used instead of ``rng``:
        ``noise[0]`` is the initial sample, ``noise[j]`` the noise of the j-th step.
      sharding: optional sharding of the ``[B, ...]`` sample (e.g. a ``NamedSharding``
        splitting the batch over a mesh axis); results do not depend on it.
      return_trajectory: also return the per-step :class:`Trajectory`.

    Returns:
      ``[*shape]`` float32 samples, and the trajectory if requested.
    """
    _check_float(log_var_mix, "log_var_mix", 0.0, 1.0)
    coefs = ddpm_coefficients(_respaced(schedule, num_steps))
    return _sample(
        "ddpm",
        model_fn,
        coefs,
        shape,
        rng,
        cond=cond,
        guidance_scale=guidance_scale,
        param=log_var_mix,
        stochastic=True,
        variance=variance,
        prediction_type=prediction_type,
        thresholding=thresholding,
        threshold_percentile=threshold_percentile,
        noise=noise,
        sharding=sharding,
        return_trajectory=return_trajectory,
    )


def ddim_sample(
    model_fn: ModelFn,
    schedule: DiscreteSchedule,
    shape: Sequence[int],
    rng: Array,
    *,
    cond: Mapping[str, Any] | None = None,
    guidance_scale: float | Array = 1.0,
    eta: float | Array = 0.0,
    variance: str = "fixed",
    prediction_type: str = "eps",
    thresholding: str | None = None,
    threshold_percentile: float | Array = DEFAULT_PERCENTILE,
    num_steps: int | Sequence[int] | None = None,
    noise: Array | None = None,
    sharding: jax.sharding.Sharding | None = None,
    return_trajectory: bool = False,
) -> Array | tuple[Array, Trajectory]:
    """DDIM sampling (Song et al. 2021) with noise level ``eta``.

    After thresholding, ``eps`` is recomputed from the thresholded ``x0_hat`` so that the
    update stays on the line between them. Arguments are those of :func:`ddpm_sample`, with
    ``eta`` (0: deterministic) in place of ``log_var_mix`` (a ``"learned_range"`` model's
    variance channels are dropped); with ``eta = 0`` only ``rng`` (or
    ``noise[0]``) sets the initial sample.

    Returns:
      ``[*shape]`` float32 samples, and the trajectory if requested.
    """
    _check_float(eta, "eta", 0.0, None)
    coefs = ddim_coefficients(_respaced(schedule, num_steps))
    stochastic = not (isinstance(eta, int | float) and eta == 0)
    return _sample(
        "ddim",
        model_fn,
        coefs,
        shape,
        rng,
        cond=cond,
        guidance_scale=guidance_scale,
        param=eta,
        stochastic=stochastic,
        variance=variance,
        prediction_type=prediction_type,
        thresholding=thresholding,
        threshold_percentile=threshold_percentile,
        noise=noise,
        sharding=sharding,
        return_trajectory=return_trajectory,
    )


def _check_float(value, name: str, lo: float | None, hi: float | None) -> None:
    if isinstance(value, int | float):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ValueError(f"{name} must be {rng}, got {value}")


def _respaced(schedule: DiscreteSchedule, num_steps) -> DiscreteSchedule:
    if not isinstance(schedule, DiscreteSchedule):
        raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
    if num_steps is None:
        return schedule
    return respace(schedule, kept_steps(schedule.num_steps, num_steps))


def _sample(
    kind: str,
    model_fn,
    coefs,
    shape,
    rng,
    *,
    cond,
    guidance_scale,
    param,
    stochastic: bool,
    variance: str,
    prediction_type: str,
    thresholding,
    threshold_percentile,
    noise,
    sharding,
    return_trajectory: bool,
):
    check_prediction_type(prediction_type)
    if variance not in VARIANCE_TYPES:
        raise ValueError(f"variance must be one of {VARIANCE_TYPES}, got {variance!r}")
    check_thresholding(thresholding, threshold_percentile)
    if not callable(model_fn):
        raise TypeError(f"model_fn must be callable, got {type(model_fn).__name__}")
    shape = tuple(int(d) for d in shape)
    if len(shape) < 1 or any(d < 1 for d in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive sizes, got {shape}")
    batch = shape[0]
    cond = {} if cond is None else {k: jnp.asarray(v) for k, v in cond.items()}
    for key, value in cond.items():
        if value.ndim < 1 or value.shape[0] != batch:
            raise ValueError(
                f"cond[{key!r}] must have leading batch dimension {batch}, got shape {value.shape}"
            )
    use_guidance = not (isinstance(guidance_scale, int | float) and guidance_scale == 1.0)
    if use_guidance and "text_emb" not in cond:
        raise KeyError(
            f"guidance_scale={guidance_scale} needs cond['text_emb']; cond has keys {sorted(cond)}"
        )
    num = len(coefs.times)
    if noise is None and rng is None:
        raise ValueError("rng must be a jax.random key unless noise is given")
    if noise is not None:
        noise = jnp.asarray(noise, jnp.float32)
        if noise.shape != (num + 1, *shape):
            raise ValueError(f"noise must have shape {(num + 1, *shape)}, got {noise.shape}")
    percentile = _static_percentile(threshold_percentile) if thresholding == "dynamic" else None
    model = model_fn if isinstance(model_fn, Partial) else Partial(model_fn)
    # Sampling order: noisiest step first.
    steps = type(coefs)(*(jnp.asarray(np.asarray(a)[::-1], jnp.float32) for a in coefs))
    return _sample_jit(
        model,
        steps,
        rng,
        cond,
        jnp.asarray(guidance_scale, jnp.float32),
        jnp.asarray(param, jnp.float32),
        noise,
        kind=kind,
        shape=shape,
        prediction_type=prediction_type,
        thresholding=thresholding,
        percentile=percentile,
        use_guidance=use_guidance,
        stochastic=stochastic,
        learned=variance == "learned_range",
        sharding=sharding,
        return_trajectory=return_trajectory,
    )


def _static_percentile(percentile) -> float:
    """The dynamic-thresholding percentile as a Python float (a static compile-time option)."""
    try:
        return float(percentile)
    except (TypeError, jax.errors.ConcretizationTypeError) as err:
        raise ValueError(
            "threshold_percentile must be a concrete number (it is a static option of the "
            f"compiled sampler), got {percentile!r}"
        ) from err


def _constrain(x: Array, sharding: jax.sharding.Sharding) -> Array:
    """Lay ``x`` out as ``sharding`` (``reshard`` on meshes with explicit axes)."""
    mesh = getattr(sharding, "mesh", None)
    axis_types = getattr(mesh, "axis_types", ()) or ()
    if any(t == jax.sharding.AxisType.Explicit for t in axis_types):
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


@functools.partial(
    jax.jit,
    static_argnames=(
        "kind",
        "shape",
        "prediction_type",
        "thresholding",
        "percentile",
        "use_guidance",
        "stochastic",
        "learned",
        "sharding",
        "return_trajectory",
    ),
)
def _sample_jit(
    model,
    steps: DDPMCoefficients | DDIMCoefficients,
    rng,
    cond,
    guidance_scale,
    param,
    noise,
    *,
    kind,
    shape,
    prediction_type,
    thresholding,
    percentile,
    use_guidance,
    stochastic,
    learned,
    sharding,
    return_trajectory,
):
    batch = shape[0]
    channels = shape[-1]
    out_shape = (*shape[:-1], 2 * channels) if learned else shape
    num = steps.times.shape[0]

    def constrain(x):
        return x if sharding is None else _constrain(x, sharding)

    if noise is None:
        key_init, key_steps = jax.random.split(rng)
        x_init = jax.random.normal(key_init, shape, jnp.float32)
        step_noise = None
    else:  # rng is unused
        x_init, step_noise = noise[0], noise[1:]
    x_init = constrain(x_init)

    def body(x, xs):
        c, j, z = xs
        t = jnp.full((batch,), c.times, jnp.float32)
        if use_guidance:
            out = guided_prediction(
                model,
                x,
                t,
                cond,
                guidance_scale=guidance_scale,
                guided_channels=channels if learned else None,
            )
        else:
            out = jnp.asarray(model(x, t, cond), jnp.float32)
            if out.shape != out_shape:
                raise ValueError(f"model_fn returned shape {out.shape}, expected {out_shape}")
        pred, learned_v = (out[..., :channels], out[..., channels:]) if learned else (out, None)
        eps, x0 = eps_and_x0(pred, x, alpha=c.alpha, sigma=c.sigma, prediction_type=prediction_type)
        x0 = threshold(x0, method=thresholding, percentile=percentile)
        if stochastic and z is None:
            z = constrain(jax.random.normal(jax.random.fold_in(key_steps, j), shape, jnp.float32))
        if kind == "ddpm":
            mean, var = ddpm_posterior(x, x0, coefs=c, log_var_mix=param, learned_v=learned_v)
            x_new = mean + jnp.sqrt(var) * z
        else:
            if thresholding is not None:
                eps = (x - c.alpha * x0) / c.sigma
            x_new = ddim_step(
                eps=eps, x0=x0, noise=z if stochastic else jnp.zeros_like(x), coefs=c, eta=param
            )
        x_new = constrain(x_new)
        return x_new, ((x_new, x0) if return_trajectory else None)

    x, ys = jax.lax.scan(body, x_init, (steps, jnp.arange(num), step_noise))
    chex.assert_shape(x, shape)
    if return_trajectory:
        return x, Trajectory(x=ys[0], x0=ys[1])
    return x
