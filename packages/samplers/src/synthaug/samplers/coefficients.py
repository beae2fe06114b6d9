"""Per-step sampler coefficients, computed in float64 from a (respaced) discrete schedule.

Step ``k`` (0-based, of the possibly respaced K-step schedule) goes from ``x_k`` to
``x_{k-1}``; ``alpha_bar_{-1} = 1``, so step 0 returns the clean sample.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core.schedules import DiscreteSchedule

__all__ = [
    "DDIMCoefficients",
    "DDPMCoefficients",
    "ddim_coefficients",
    "ddim_step",
    "ddpm_coefficients",
    "ddpm_posterior",
]


class DDPMCoefficients(NamedTuple):
    """Ancestral-sampling coefficients, one entry per step.

    Attributes:
      times: continuous time passed to the network.
      alpha, sigma: ``sqrt(alpha_bar_k)``, ``sqrt(1 - alpha_bar_k)``.
      coef_x0, coef_xt: posterior mean ``coef_x0 * x0 + coef_xt * x_k``.
      log_beta: ``log beta_k`` (beta rebuilt from ``alpha_bar``).
      log_beta_tilde: ``log`` of the posterior variance
        ``beta_k (1 - alpha_bar_{k-1}) / (1 - alpha_bar_k)``; at step 0, where it is 0, the
        value of step 1 is stored instead (step 0 adds no noise).
      noise_mask: 1 for steps that add noise, 0 for step 0.
    """

    times: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray
    coef_x0: np.ndarray
    coef_xt: np.ndarray
    log_beta: np.ndarray
    log_beta_tilde: np.ndarray
    noise_mask: np.ndarray


class DDIMCoefficients(NamedTuple):
    """DDIM coefficients, one entry per step.

    Attributes:
      times: continuous time passed to the network.
      alpha, sigma: ``sqrt(alpha_bar_k)``, ``sqrt(1 - alpha_bar_k)``.
      alpha_prev, sigma_prev: the same for the step it goes to (``1, 0`` after step 0).
      std_unit: the DDIM noise standard deviation at ``eta = 1``,
        ``sqrt((1 - alpha_bar_{k-1}) / (1 - alpha_bar_k) * (1 - alpha_bar_k / alpha_bar_{k-1}))``.
    """

    times: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray
    alpha_prev: np.ndarray
    sigma_prev: np.ndarray
    std_unit: np.ndarray


def _check(schedule) -> None:
    if not isinstance(schedule, DiscreteSchedule):
        raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")


def ddpm_coefficients(schedule: DiscreteSchedule) -> DDPMCoefficients:
    """Float64 DDPM coefficients of ``schedule`` (already respaced if sampling fewer steps)."""
    _check(schedule)
    ac = np.asarray(schedule.alphas_cumprod, np.float64)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    beta = 1.0 - ac / ac_prev
    one_minus = 1.0 - ac
    beta_tilde = beta * (1.0 - ac_prev) / one_minus
    log_beta_tilde = np.log(np.where(beta_tilde > 0, beta_tilde, 1.0))
    log_beta_tilde[0] = log_beta_tilde[1] if len(ac) > 1 else np.log(beta[0])
    noise_mask = np.ones_like(ac)
    noise_mask[0] = 0.0
    return DDPMCoefficients(
        times=np.asarray(schedule.times, np.float64),
        alpha=np.sqrt(ac),
        sigma=np.sqrt(one_minus),
        coef_x0=np.sqrt(ac_prev) * beta / one_minus,
        coef_xt=np.sqrt(1.0 - beta) * (1.0 - ac_prev) / one_minus,
        log_beta=np.log(beta),
        log_beta_tilde=log_beta_tilde,
        noise_mask=noise_mask,
    )


def ddim_coefficients(schedule: DiscreteSchedule) -> DDIMCoefficients:
    """Float64 DDIM coefficients of ``schedule`` (already respaced if sampling fewer steps)."""
    _check(schedule)
    ac = np.asarray(schedule.alphas_cumprod, np.float64)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    std_unit = np.sqrt((1.0 - ac_prev) / (1.0 - ac) * (1.0 - ac / ac_prev))
    return DDIMCoefficients(
        times=np.asarray(schedule.times, np.float64),
        alpha=np.sqrt(ac),
        sigma=np.sqrt(1.0 - ac),
        alpha_prev=np.sqrt(ac_prev),
        sigma_prev=np.sqrt(1.0 - ac_prev),
        std_unit=std_unit,
    )


def ddpm_posterior(x_t, x0, *, coefs: DDPMCoefficients, log_var_mix, learned_v=None):
    """Mean and variance of the reverse step ``p(x_{k-1} | x_k)`` given a predicted ``x0``.

    The mean is that of the forward posterior ``q(x_{k-1} | x_k, x0)``; the variance is the
    log-space mix ``exp(v log beta_k + (1 - v) log beta_tilde_k)`` (Nichol & Dhariwal), 0 at
    step 0.

    Args:
      x_t: noisy sample at step k.
      x0: predicted clean sample.
      coefs: the coefficients of step k (scalars, or arrays broadcastable to ``x_t``).
      log_var_mix: ``v``; 0 gives the posterior variance, 1 gives ``beta_k``.
      learned_v: a model's learned-range variance output in [-1, 1] (shape of ``x_t``): the
        per-element mix ``(learned_v + 1) / 2`` is used instead of ``log_var_mix`` (Nichol &
        Dhariwal; guided-diffusion's and diffusers' ``learned_range``).

    Returns:
      ``(mean, variance)``.
    """
    mean = coefs.coef_x0 * x0 + coefs.coef_xt * x_t
    v = log_var_mix if learned_v is None else (learned_v + 1.0) / 2.0
    log_var = v * coefs.log_beta + (1.0 - v) * coefs.log_beta_tilde
    return mean, coefs.noise_mask * jnp.exp(log_var)


def ddim_step(*, eps, x0, noise, coefs: DDIMCoefficients, eta):
    """One DDIM update ``x_k -> x_{k-1}`` (Song et al. 2021, eq. 12).

    ``x_{k-1} = alpha_prev x0 + sqrt(sigma_prev**2 - s**2) eps + s noise`` with
    ``s = eta * std_unit``.

    Args:
      eps, x0: the (thresholded, consistent) noise and clean-sample predictions.
      noise: standard normal draw (ignored when ``eta = 0``).
      coefs: the coefficients of step k.
      eta: 0 for the deterministic sampler, 1 for the ancestral-like one.

    Returns:
      ``x_{k-1}``.
    """
    std = eta * coefs.std_unit
    direction = jnp.sqrt(jnp.maximum(coefs.sigma_prev**2 - std**2, 0.0))
    return coefs.alpha_prev * x0 + direction * eps + std * noise
