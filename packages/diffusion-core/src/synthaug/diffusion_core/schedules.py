"""Noise schedules as small pure functions of continuous time t in [0, 1].

A Gaussian diffusion is described by its log signal-to-noise ratio
``log_snr(t) = log(alpha_t**2 / sigma_t**2)``, decreasing in t, with a variance-preserving
``alpha_t**2 + sigma_t**2 = 1``. Everything else (alpha, sigma, the discrete betas and
cumulative alphas a sampler needs) follows from it:

    alpha_t**2 = sigmoid(log_snr),   sigma_t**2 = sigmoid(-log_snr).

Two continuous schedules are provided, as in Imagen (the Imagen presets use these):

* :func:`cosine_log_snr`: the continuous cosine schedule ``alpha_t = cos(pi t / 2)`` (Kingma
  et al. 2021's form of Nichol & Dhariwal's schedule, *without* their offset ``s``), in
  log-SNR form ``-2 log tan(a t + b)`` clipped to ``[log_snr_min, log_snr_max]`` so that it is
  finite at both endpoints (base 64x64 and the 64->256 super-resolution model).
* :func:`linear_beta_log_snr`: the continuous-time limit of the 1000-step linear beta schedule
  1e-4..0.02 (Ho et al. 2020), ``-log(expm1(beta_min t + (beta_max - beta_min) t**2 / 2))``
  with ``beta_min = N * beta_start`` and ``beta_max = N * beta_end`` (the 256->1024 model).

:class:`DiscreteSchedule` is the discrete view (betas and cumulative alphas on N steps),
computed in float64 with NumPy, which samplers respace and turn into device arrays.

The public pretrained models were trained on exact discrete schedules, available by name
through :func:`discrete_schedule`:

* ``"nichol_cosine"`` (:func:`nichol_cosine_schedule`): Nichol & Dhariwal's cosine schedule
  with the offset ``s = 0.008`` and betas capped at 0.999 (guided-diffusion's ``cosine``,
  diffusers' ``squaredcos_cap_v2``): ADM 64x64 and DeepFloyd IF;
* ``"ddpm_linear"`` (:func:`linear_beta_schedule`): DDPM's linear betas 1e-4..0.02 (the ADM
  upsamplers).

Their continuous versions (:func:`nichol_cosine_log_snr`, :func:`linear_beta_log_snr`) serve
training.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray
LogSNRFn = Callable[[Array], Array]

LOG_SNR_MIN = -20.0
LOG_SNR_MAX = 20.0

__all__ = [
    "LOG_SNR_MAX",
    "LOG_SNR_MIN",
    "DiscreteSchedule",
    "alpha_sigma",
    "alpha_squared",
    "cosine_log_snr",
    "discrete_schedule",
    "discretize",
    "get_log_snr_fn",
    "linear_beta_log_snr",
    "linear_beta_schedule",
    "log_snr_from_alpha_squared",
    "nichol_cosine_log_snr",
    "nichol_cosine_schedule",
    "sigma_squared",
]


def cosine_log_snr(
    t: Array,
    *,
    log_snr_min: float = LOG_SNR_MIN,
    log_snr_max: float = LOG_SNR_MAX,
) -> Array:
    """Cosine schedule: ``log_snr(t) = -2 log tan(a t + b)``.

    ``b`` and ``a`` are chosen so that ``log_snr(0) = log_snr_max`` and
    ``log_snr(1) = log_snr_min``; between them it is the cosine schedule
    ``alpha_t**2 = cos(pi t / 2)**2`` up to the clipping of the endpoints.

    Args:
      t: continuous time in [0, 1], any shape.
      log_snr_min: log-SNR at t = 1.
      log_snr_max: log-SNR at t = 0.

    Returns:
      log-SNR with the shape and (float) dtype of ``t``.
    """
    return _cosine(jnp, t, log_snr_min=log_snr_min, log_snr_max=log_snr_max)


def _float_input(xp, t):
    t = xp.asarray(t)
    dtype = t.dtype if xp.issubdtype(t.dtype, xp.floating) else xp.float32
    return t.astype(dtype), dtype


def _cosine(xp, t, *, log_snr_min: float = LOG_SNR_MIN, log_snr_max: float = LOG_SNR_MAX):
    if not log_snr_min < log_snr_max:
        raise ValueError(f"log_snr_min must be < log_snr_max, got {log_snr_min} and {log_snr_max}")
    t, dtype = _float_input(xp, t)
    b = math.atan(math.exp(-0.5 * log_snr_max))
    a = math.atan(math.exp(-0.5 * log_snr_min)) - b
    log_snr = -2.0 * xp.log(xp.tan(a * t + b))
    # In float32, tan near pi/2 overshoots the endpoint slightly: clip to the stated range.
    return xp.clip(log_snr, log_snr_min, log_snr_max).astype(dtype)


def linear_beta_log_snr(
    t: Array,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_steps: int = 1000,
    log_snr_min: float = LOG_SNR_MIN,
    log_snr_max: float = LOG_SNR_MAX,
) -> Array:
    """Continuous-time linear-beta (VP) schedule.

    ``log(alpha_t**2) = -(beta_min t + (beta_max - beta_min) t**2 / 2)`` with
    ``beta_min = num_steps * beta_start`` and ``beta_max = num_steps * beta_end``, so that
    ``alpha_t**2`` at ``t = i / num_steps`` matches the discrete ``prod(1 - beta_j)`` of the
    DDPM schedule to first order. The result is clipped to ``[log_snr_min, log_snr_max]``
    (at t = 0 the unclipped value is +inf).

    Args:
      t: continuous time in [0, 1], any shape.
      beta_start, beta_end, num_steps: the discrete schedule this is the limit of.
      log_snr_min, log_snr_max: clipping range.

    Returns:
      log-SNR with the shape and (float) dtype of ``t``.
    """
    return _linear_beta(
        jnp,
        t,
        beta_start=beta_start,
        beta_end=beta_end,
        num_steps=num_steps,
        log_snr_min=log_snr_min,
        log_snr_max=log_snr_max,
    )


def _linear_beta(
    xp,
    t,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_steps: int = 1000,
    log_snr_min: float = LOG_SNR_MIN,
    log_snr_max: float = LOG_SNR_MAX,
):
    t, dtype = _float_input(xp, t)
    beta_min = num_steps * beta_start
    beta_max = num_steps * beta_end
    neg_log_alpha_sq = beta_min * t + 0.5 * (beta_max - beta_min) * t * t
    # log_snr = -log(expm1(x)); keep x away from 0 so the log is finite, then clip.
    x = xp.maximum(neg_log_alpha_sq, xp.asarray(math.exp(-log_snr_max) * 0.5, dtype))
    log_snr = -xp.log(xp.expm1(x))
    return xp.clip(log_snr, log_snr_min, log_snr_max).astype(dtype)


def nichol_cosine_log_snr(
    t: Array,
    *,
    s: float = 0.008,
    log_snr_min: float = LOG_SNR_MIN,
    log_snr_max: float = LOG_SNR_MAX,
) -> Array:
    """Nichol & Dhariwal's cosine schedule with offset ``s``, continuous in ``t``.

    ``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos((t + s) / (1 + s) * pi / 2)**2``;
    ``log_snr = log(alpha_bar / (1 - alpha_bar))`` clipped to ``[log_snr_min, log_snr_max]``.
    At ``t = i / N`` it is the discrete :func:`nichol_cosine_schedule` except at the last
    step, whose beta the discrete schedule caps at 0.999.
    """
    return _nichol_cosine(jnp, t, s=s, log_snr_min=log_snr_min, log_snr_max=log_snr_max)


def _nichol_cosine(xp, t, *, s=0.008, log_snr_min=LOG_SNR_MIN, log_snr_max=LOG_SNR_MAX):
    t, dtype = _float_input(xp, t)
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    a = xp.cos((t + s) / (1 + s) * (math.pi / 2)) ** 2 / f0
    a = xp.clip(a, 1e-30, 1.0 - 1e-12)
    log_snr = xp.log(a) - xp.log1p(-a)
    return xp.clip(log_snr, log_snr_min, log_snr_max).astype(dtype)


def nichol_cosine_schedule(
    num_steps: int = 1000, *, s: float = 0.008, max_beta: float = 0.999
) -> DiscreteSchedule:
    """The exact discrete cosine schedule of Nichol & Dhariwal (2021).

    ``beta_i = min(1 - alpha_bar(i / N) / alpha_bar((i - 1) / N), max_beta)``, i = 1..N, with
    ``alpha_bar(t) = cos((t + s) / (1 + s) * pi / 2)**2`` and ``alphas_cumprod`` the cumulative
    product of ``1 - beta`` (guided-diffusion's ``get_named_beta_schedule("cosine", N)``,
    diffusers' ``squaredcos_cap_v2``).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    times = np.arange(1, num_steps + 1, dtype=np.float64) / num_steps
    return DiscreteSchedule(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas), times=times)


def alpha_squared(log_snr: Array) -> Array:
    """``alpha_t**2 = sigmoid(log_snr)`` (the cumulative alpha, ``alpha_bar``)."""
    return jnp.exp(-jnp.logaddexp(0.0, -log_snr))


def sigma_squared(log_snr: Array) -> Array:
    """``sigma_t**2 = sigmoid(-log_snr)``."""
    return jnp.exp(-jnp.logaddexp(0.0, log_snr))


def alpha_sigma(log_snr: Array) -> tuple[Array, Array]:
    """``(alpha_t, sigma_t)`` from log-SNR, computed without cancellation at either end."""
    return jnp.sqrt(alpha_squared(log_snr)), jnp.sqrt(sigma_squared(log_snr))


def log_snr_from_alpha_squared(alpha_sq: Array) -> Array:
    """Inverse of :func:`alpha_squared`: ``log(a / (1 - a))``."""
    return jnp.log(alpha_sq) - jnp.log1p(-alpha_sq)


_SCHEDULES: dict[str, Callable[..., Array]] = {
    "cosine": cosine_log_snr,
    "linear": linear_beta_log_snr,
    "nichol_cosine": nichol_cosine_log_snr,
    "ddpm_linear": linear_beta_log_snr,
}

# The same formulas on NumPy arrays: ``discretize`` evaluates them in float64 without
# dispatching JAX operations one by one (which costs about half a second per call).
cosine_log_snr.numpy_fn = functools.partial(_cosine, np)
linear_beta_log_snr.numpy_fn = functools.partial(_linear_beta, np)
nichol_cosine_log_snr.numpy_fn = functools.partial(_nichol_cosine, np)


def get_log_snr_fn(name: str, **kwargs) -> LogSNRFn:
    """The log-SNR function of a named schedule (``"cosine"``, ``"linear"``,
    ``"nichol_cosine"`` or ``"ddpm_linear"``, the last two continuous versions of the discrete
    schedules of :func:`discrete_schedule`).

    Keyword arguments are bound to the schedule (e.g. ``beta_start`` for ``"linear"``).
    """
    if name not in _SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; expected one of {sorted(_SCHEDULES)}")
    fn = _SCHEDULES[name]

    def log_snr_fn(t: Array) -> Array:
        return fn(t, **kwargs)

    log_snr_fn.__name__ = f"{name}_log_snr"
    log_snr_fn.numpy_fn = functools.partial(fn.numpy_fn, **kwargs)
    return log_snr_fn


@dataclasses.dataclass(frozen=True)
class DiscreteSchedule:
    """The discrete view of a diffusion on N steps, in float64 NumPy.

    Step ``i`` (0-based) goes from ``x_{i}`` to ``x_{i+1}``, i.e. index ``i`` holds
    ``beta_{i+1}`` and ``alpha_bar_{i+1}`` in DDPM's 1-based notation.

    Attributes:
      betas: ``(N,)`` per-step variances ``1 - alpha_bar_i / alpha_bar_{i-1}``.
      alphas_cumprod: ``(N,)`` cumulative ``alpha_bar_i``.
      times: ``(N,)`` continuous time of each step, passed to the network (for a schedule
        built by :func:`discretize`, ``(i + 1) / N``; for :func:`linear_beta_schedule`, the
        same convention).
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    times: np.ndarray

    def __post_init__(self):
        n = len(self.betas)
        for name in ("alphas_cumprod", "times"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"DiscreteSchedule.{name} has length {len(getattr(self, name))}, expected {n}"
                )
        if np.any(self.betas <= 0) or np.any(self.betas > 1):
            raise ValueError("DiscreteSchedule.betas must lie in (0, 1]")

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        """``alpha_bar_{i-1}`` with ``alpha_bar_0 = 1``."""
        return np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    @property
    def log_snr(self) -> np.ndarray:
        a = self.alphas_cumprod
        return np.log(a) - np.log1p(-a)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod, times) -> DiscreteSchedule:
        """Rebuild the betas from cumulative alphas (the only correct way to respace)."""
        ac = np.asarray(alphas_cumprod, dtype=np.float64)
        prev = np.concatenate([[1.0], ac[:-1]])
        return cls(betas=1.0 - ac / prev, alphas_cumprod=ac, times=np.asarray(times, np.float64))


def discretize(log_snr_fn: LogSNRFn, num_steps: int) -> DiscreteSchedule:
    """The discrete schedule of a continuous one at ``t_i = i / num_steps``, i = 1..N.

    The schedule function is evaluated in float64 (64-bit mode enabled for the call), so the
    betas near t = 0, where ``1 - alpha_bar`` is tiny, keep their precision.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    times = np.arange(1, num_steps + 1, dtype=np.float64) / num_steps
    log_snr = _eval_float64(log_snr_fn, times)
    alphas_cumprod = 1.0 / (1.0 + np.exp(-log_snr))
    return DiscreteSchedule.from_alphas_cumprod(alphas_cumprod, times)


def discrete_schedule(name: str, num_steps: int = 1000) -> DiscreteSchedule:
    """The discrete schedule of a named schedule on ``num_steps`` steps.

    ``"nichol_cosine"`` and ``"ddpm_linear"`` are the exact discrete schedules the pretrained
    models were trained with (:func:`nichol_cosine_schedule`, :func:`linear_beta_schedule`);
    ``"cosine"`` and ``"linear"`` are :func:`discretize` of the continuous ones.
    """
    if name == "nichol_cosine":
        return nichol_cosine_schedule(num_steps)
    if name == "ddpm_linear":
        return linear_beta_schedule(num_steps)
    return discretize(get_log_snr_fn(name), num_steps)


def linear_beta_schedule(
    num_steps: int = 1000, *, beta_start: float = 1e-4, beta_end: float = 0.02
) -> DiscreteSchedule:
    """The exact discrete DDPM linear schedule: betas linearly spaced, ``alpha_bar = cumprod``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    times = np.arange(1, num_steps + 1, dtype=np.float64) / num_steps
    return DiscreteSchedule(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas), times=times)


def _eval_float64(fn: LogSNRFn, t: np.ndarray) -> np.ndarray:
    """Evaluate a schedule function in float64 regardless of jax_enable_x64.

    The built-in schedules carry a NumPy version of themselves (``fn.numpy_fn``); any other
    jnp function is evaluated eagerly with 64-bit mode enabled for the call.
    """
    import jax

    numpy_fn = getattr(fn, "numpy_fn", None)
    if numpy_fn is not None:
        return np.asarray(numpy_fn(np.asarray(t, np.float64)), dtype=np.float64)
    # Evaluated eagerly even under an outer jax.jit: the schedule is a compile-time constant.
    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        return np.asarray(fn(jnp.asarray(t, dtype=jnp.float64)), dtype=np.float64)
