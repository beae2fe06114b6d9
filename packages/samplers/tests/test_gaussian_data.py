"""Sampling Gaussian data with its exact denoiser: the samples must have the data's moments.

For x0 ~ N(mu, s**2) per dimension and x_t = alpha x0 + sigma eps, the exact noise
predictor is eps(x_t) = sigma (x_t - alpha mu) / (alpha**2 s**2 + sigma**2). Every sampler
step is then affine in x_t, so the exact mean and standard deviation of the sampler's output
(including its time-discretization error) follow in closed form; they are computed here in
float64, independently of the package's coefficient code.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core.schedules import alpha_squared, cosine_log_snr, discretize
from synthaug.samplers import ddim_sample, ddpm_sample, kept_steps

MU = np.array([-0.3, 0.0, 0.5])
S = np.array([0.7, 1.0, 1.3])
N_SAMPLES = 20_000
SCHEDULE = discretize(cosine_log_snr, 1000)
# Standard errors of the sample mean and standard deviation.
SE_MEAN = S / np.sqrt(N_SAMPLES)
SE_STD = S / np.sqrt(2 * N_SAMPLES)


@functools.cache
def _exact_model(prediction_type="eps"):
    mu, s2 = jnp.asarray(MU, jnp.float32), jnp.asarray(S**2, jnp.float32)

    def model_fn(x, t, cond):
        del cond
        ac = alpha_squared(cosine_log_snr(t))[:, None]
        a, sig = jnp.sqrt(ac), jnp.sqrt(1.0 - ac)
        eps = sig * (x - a * mu) / (ac * s2 + sig**2)
        if prediction_type == "eps":
            return eps
        x0 = mu + a * s2 * (x - a * mu) / (ac * s2 + sig**2)  # E[x0 | x_t]
        return x0 if prediction_type == "x0" else a * eps - sig * x0

    return model_fn


def _exact_chain_moments(ac, *, kind, log_var_mix=0.0, eta=0.0, rebuild_betas=True, betas=None):
    """Exact output mean/std of the sampler on the kept alpha_bar values ``ac`` (float64)."""
    ac = np.asarray(ac, np.float64)
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    m, var = np.zeros_like(MU), np.ones_like(MU)
    for k in range(len(ac) - 1, -1, -1):
        a, sig2 = np.sqrt(ac[k]), 1.0 - ac[k]
        tot = ac[k] * S**2 + sig2
        g, h = np.sqrt(sig2) / tot, -np.sqrt(sig2) * a * MU / tot  # eps_hat = g x + h
        p, q = (1 - np.sqrt(sig2) * g) / a, -np.sqrt(sig2) * h / a  # x0_hat = p x + q
        if kind == "ddpm":
            beta = 1.0 - ac[k] / ac_prev[k] if rebuild_betas else betas[k]
            if k == 0:
                A, B, noise_var = p, q, 0.0
            else:
                # Posterior q(x_{k-1} | x_k, x0) by Bayes' rule: product of two Gaussians.
                prec = (1 - beta) / beta + 1.0 / (1.0 - ac_prev[k])
                cx = np.sqrt(1 - beta) / beta / prec
                c0 = np.sqrt(ac_prev[k]) / (1.0 - ac_prev[k]) / prec
                A, B = c0 * p + cx, c0 * q
                noise_var = np.exp(
                    log_var_mix * np.log(beta) + (1 - log_var_mix) * np.log(1 / prec)
                )
        else:
            std = eta * np.sqrt((1 - ac_prev[k]) / (1 - ac[k]) * (1 - ac[k] / ac_prev[k]))
            d = np.sqrt(1 - ac_prev[k] - std**2)
            A = np.sqrt(ac_prev[k]) * p + d * g
            B = np.sqrt(ac_prev[k]) * q + d * h
            noise_var = std**2
        m, var = A * m + B, A * A * var + noise_var
    return m, np.sqrt(var)


def _run(sampler, num_steps, seed, **kw):
    x = sampler(
        _exact_model(kw.get("prediction_type", "eps")),
        SCHEDULE,
        (N_SAMPLES, 3),
        jax.random.key(seed),
        num_steps=num_steps,
        **kw,
    )
    x = np.asarray(x, np.float64)
    return x.mean(0), x.std(0)


UNBIASED = [
    ("ddpm_v0_1000", ddpm_sample, None, dict(log_var_mix=0.0)),
    ("ddpm_v1_1000", ddpm_sample, None, dict(log_var_mix=1.0)),
    ("ddpm_v1_50", ddpm_sample, 50, dict(log_var_mix=1.0)),
    ("ddim_1000", ddim_sample, None, dict(eta=0.0)),
    ("ddim_eta1_200", ddim_sample, 200, dict(eta=1.0)),
]


@pytest.mark.parametrize("name,sampler,steps,kw", UNBIASED, ids=[u[0] for u in UNBIASED])
def test_samples_have_data_moments(name, sampler, steps, kw):
    mean, std = _run(sampler, steps, seed=1, **kw)
    np.testing.assert_array_less(np.abs(mean - MU), 4 * SE_MEAN)
    np.testing.assert_array_less(np.abs(std - S), 4 * SE_STD)
    # And with the exact moments of the discretized chain.
    ac = SCHEDULE.alphas_cumprod[kept_steps(1000, steps)]
    m, s = _exact_chain_moments(ac, kind=sampler.__name__[:4], **kw)
    np.testing.assert_array_less(np.abs(mean - m), 4 * SE_MEAN)
    np.testing.assert_array_less(np.abs(std - s), 4 * SE_STD)


COARSE = [
    ("ddpm_v0_50", ddpm_sample, 50, dict(log_var_mix=0.0)),
    ("ddpm_v0.3_50", ddpm_sample, 50, dict(log_var_mix=0.3)),
    ("ddim_50", ddim_sample, 50, dict(eta=0.0)),
]


@pytest.mark.parametrize("name,sampler,steps,kw", COARSE, ids=[c[0] for c in COARSE])
def test_coarse_samplers_match_their_exact_discretization(name, sampler, steps, kw):
    """With 50 steps, v < 1 DDPM and DDIM shrink the std by a few per cent (a property of the
    discretization, not sampling error): the samples must match the chain's exact moments,
    which stay within 6% of the data's."""
    mean, std = _run(sampler, steps, seed=2, **kw)
    ac = SCHEDULE.alphas_cumprod[kept_steps(1000, steps)]
    m, s = _exact_chain_moments(ac, kind=sampler.__name__[:4], **kw)
    np.testing.assert_array_less(np.abs(mean - m), 4 * SE_MEAN)
    np.testing.assert_array_less(np.abs(std - s), 4 * SE_STD)
    np.testing.assert_array_less(np.abs(s / S - 1), 0.06)
    np.testing.assert_array_less(np.abs(mean - MU), 4 * SE_MEAN)


def test_reusing_original_betas_when_respacing_would_be_detected():
    """The respacing bug (original betas at the kept steps) moves the moments by >> 4 SE.

    (Dimension 1 is N(0, 1), the fixed point of the forward process, where it does not show.)
    """
    steps = kept_steps(1000, 50)
    ac = SCHEDULE.alphas_cumprod[steps]
    m_bug, s_bug = _exact_chain_moments(
        ac, kind="ddpm", log_var_mix=1.0, rebuild_betas=False, betas=SCHEDULE.betas[steps]
    )
    assert np.all(np.abs(s_bug - S)[[0, 2]] > 10 * SE_STD[[0, 2]])
    assert np.all(np.abs(m_bug - MU)[[0, 2]] > 10 * SE_MEAN[[0, 2]])


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_prediction_types_give_the_same_samples(sampler):
    """The same exact model as eps, v or x0 prediction gives the same samples for one key."""
    outs = [
        np.asarray(
            sampler(
                _exact_model(p),
                SCHEDULE,
                (256, 3),
                jax.random.key(3),
                num_steps=20,
                prediction_type=p,
                thresholding="dynamic",
                threshold_percentile=90.0,
            )
        )
        for p in ("eps", "v", "x0")
    ]
    np.testing.assert_allclose(outs[1], outs[0], atol=2e-4)
    np.testing.assert_allclose(outs[2], outs[0], atol=2e-4)
