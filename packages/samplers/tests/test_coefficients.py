"""Posterior mean/variance per step against closed forms in float64; respacing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core.schedules import cosine_log_snr, discretize, linear_beta_schedule
from synthaug.samplers import (
    ddim_coefficients,
    ddpm_coefficients,
    ddpm_posterior,
    kept_steps,
    respace,
    spaced_steps,
)

LINEAR = linear_beta_schedule(1000)
COSINE = discretize(cosine_log_snr, 1000)


def _closed_form_posterior(ac, k, x_t, x0, v):
    """q(x_{k-1} | x_k, x0) by Bayes' rule in float64, and the mixed variance."""
    ac_prev = 1.0 if k == 0 else ac[k - 1]
    alpha_k = ac[k] / ac_prev
    beta = 1.0 - alpha_k
    if k == 0:
        return x0, np.zeros_like(x0)
    # q(x_k | x_{k-1}) = N(sqrt(alpha_k) x_{k-1}, beta);  q(x_{k-1} | x0) = N(sqrt(ac_prev) x0, 1 - ac_prev)
    precision = alpha_k / beta + 1.0 / (1.0 - ac_prev)
    mean = (np.sqrt(alpha_k) / beta * x_t + np.sqrt(ac_prev) / (1.0 - ac_prev) * x0) / precision
    var = np.exp(v * np.log(beta) + (1 - v) * np.log(1.0 / precision))
    return mean, np.full_like(x0, var)


@pytest.mark.parametrize("schedule,num_steps", [(LINEAR, None), (COSINE, 50), (LINEAR, 17)])
@pytest.mark.parametrize("v", [0.0, 0.3, 1.0])
def test_posterior_matches_bayes_closed_form(schedule, num_steps, v):
    steps = kept_steps(schedule.num_steps, num_steps)
    ac = schedule.alphas_cumprod[steps]  # the respaced alpha_bar: the original at kept steps
    coefs = ddpm_coefficients(respace(schedule, steps))
    rng = np.random.default_rng(0)
    x_t, x0 = rng.standard_normal((2, len(steps), 8))
    f32 = type(coefs)(*(jnp.asarray(a, jnp.float32)[:, None] for a in coefs))
    mean, var = jax.jit(ddpm_posterior)(
        jnp.asarray(x_t, jnp.float32), jnp.asarray(x0, jnp.float32), coefs=f32, log_var_mix=v
    )
    for k in range(len(steps)):
        m_ref, v_ref = _closed_form_posterior(ac, k, x_t[k], x0[k], v)
        np.testing.assert_allclose(np.asarray(mean[k]), m_ref, atol=2e-6, rtol=1e-5)
        np.testing.assert_allclose(
            np.broadcast_to(np.asarray(var[k]), v_ref.shape), v_ref, rtol=2e-5, atol=0
        )


def test_log_var_mix_endpoints_are_beta_tilde_and_beta():
    c = ddpm_coefficients(respace(COSINE, kept_steps(1000, 100)))
    ac = COSINE.alphas_cumprod[kept_steps(1000, 100)]
    beta = 1 - ac[1:] / ac[:-1]
    beta_tilde = beta * (1 - ac[:-1]) / (1 - ac[1:])
    np.testing.assert_allclose(np.exp(c.log_beta[1:]), beta, rtol=1e-12)
    np.testing.assert_allclose(np.exp(c.log_beta_tilde[1:]), beta_tilde, rtol=1e-12)
    assert np.all(beta_tilde < beta)
    assert c.noise_mask[0] == 0 and np.all(c.noise_mask[1:] == 1)


def test_ddim_coefficients_closed_form():
    c = ddim_coefficients(LINEAR)
    ac = LINEAR.alphas_cumprod
    k = 500
    sigma_ddim = np.sqrt((1 - ac[k - 1]) / (1 - ac[k])) * np.sqrt(1 - ac[k] / ac[k - 1])
    np.testing.assert_allclose(c.std_unit[k], sigma_ddim, rtol=1e-12)
    # At eta = 1 the DDIM noise equals the DDPM posterior std.
    d = ddpm_coefficients(LINEAR)
    np.testing.assert_allclose(c.std_unit[1:] ** 2, np.exp(d.log_beta_tilde[1:]), rtol=1e-10)
    assert c.alpha_prev[0] == 1.0 and c.sigma_prev[0] == 0.0


def test_spaced_steps_keep_both_ends():
    s = spaced_steps(1000, 50)
    assert len(s) == 50 and s[0] == 0 and s[-1] == 999 and np.all(np.diff(s) > 0)
    assert list(spaced_steps(10, 10)) == list(range(10))
    assert list(spaced_steps(1000, 1)) == [999]


def test_respace_rebuilds_betas_from_alpha_bar():
    steps = np.array([0, 3, 10, 400, 999])
    r = respace(LINEAR, steps)
    np.testing.assert_array_equal(r.alphas_cumprod, LINEAR.alphas_cumprod[steps])
    np.testing.assert_array_equal(r.times, LINEAR.times[steps])
    expected = 1 - LINEAR.alphas_cumprod[steps] / np.concatenate(
        [[1.0], LINEAR.alphas_cumprod[steps[:-1]]]
    )
    np.testing.assert_allclose(r.betas, expected, rtol=1e-12)
    # Not the original betas at the kept steps.
    assert np.all(np.abs(r.betas[1:] - LINEAR.betas[steps[1:]]) > 1e-4)
    full = respace(LINEAR, np.arange(1000))
    np.testing.assert_allclose(full.betas, LINEAR.betas, rtol=1e-9)


@pytest.mark.parametrize(
    "bad,match",
    [
        (0, "between 1"),
        (1001, "between 1"),
        ([5, 5], "distinct"),
        ([-1, 3], r"\[0, 1000\)"),
        ([], "non-empty"),
        ([[1, 2]], "1-D"),
        ([0.5], "step indices"),
    ],
)
def test_kept_steps_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        kept_steps(1000, bad)


def test_kept_steps_sorts_explicit_indices():
    np.testing.assert_array_equal(kept_steps(1000, [999, 0, 500]), [0, 500, 999])
