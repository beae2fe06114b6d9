import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core import (
    LOG_SNR_MAX,
    LOG_SNR_MIN,
    DiscreteSchedule,
    alpha_sigma,
    alpha_squared,
    cosine_log_snr,
    discretize,
    get_log_snr_fn,
    linear_beta_log_snr,
    linear_beta_schedule,
    log_snr_from_alpha_squared,
    sigma_squared,
)

SCHEDULES = ["cosine", "linear"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_endpoints_finite_float32(name):
    fn = get_log_snr_fn(name)
    t = jnp.array([0.0, 1e-7, 1e-3, 0.5, 1 - 1e-7, 1.0], jnp.float32)
    log_snr = fn(t)
    assert log_snr.dtype == jnp.float32
    alpha, sigma = alpha_sigma(log_snr)
    for arr in (log_snr, alpha, sigma, alpha_squared(log_snr), sigma_squared(log_snr)):
        assert bool(jnp.all(jnp.isfinite(arr))), arr
    assert bool(jnp.all(log_snr <= LOG_SNR_MAX)) and bool(jnp.all(log_snr >= LOG_SNR_MIN))
    # t=0 is (almost) clean data, t=1 (almost) pure noise for the cosine schedule.
    assert float(alpha[0]) > 0.9999 and float(sigma[0]) < 1e-4
    assert float(sigma[-1]) > 0.99
    # Gradients w.r.t. t are finite at the endpoints too.
    g = jax.vmap(jax.grad(lambda s: fn(s)))(t)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_cosine_endpoints_exact():
    v = cosine_log_snr(jnp.array([0.0, 1.0], jnp.float32))
    np.testing.assert_allclose(np.asarray(v), [LOG_SNR_MAX, LOG_SNR_MIN], atol=1e-3)


@pytest.mark.parametrize("name", SCHEDULES)
def test_monotonic_decreasing(name):
    t = jnp.linspace(0.0, 1.0, 10001, dtype=jnp.float32)
    v = np.asarray(get_log_snr_fn(name)(t))
    assert np.all(np.diff(v) <= 0)
    assert v[0] > v[len(v) // 2] > v[-1]
    a2 = np.asarray(alpha_squared(jnp.asarray(v)))
    assert np.all(np.diff(a2) <= 0)


def test_variance_preserving_and_inverse():
    log_snr = jnp.linspace(-20, 20, 101)
    np.testing.assert_allclose(alpha_squared(log_snr) + sigma_squared(log_snr), 1.0, atol=1e-6)
    mid = jnp.linspace(-8, 8, 33)
    np.testing.assert_allclose(log_snr_from_alpha_squared(alpha_squared(mid)), mid, atol=1e-4)


def test_cosine_matches_cos_squared_in_the_interior():
    t = np.linspace(0.05, 0.95, 19)
    a2 = np.asarray(alpha_squared(cosine_log_snr(jnp.asarray(t))))
    np.testing.assert_allclose(a2, np.cos(np.pi * t / 2) ** 2, atol=2e-4)


@pytest.mark.parametrize("name", SCHEDULES)
def test_discrete_view_consistent(name):
    fn = get_log_snr_fn(name)
    n = 50
    d = discretize(fn, n)
    assert isinstance(d, DiscreteSchedule) and d.num_steps == n
    np.testing.assert_allclose(d.times, np.arange(1, n + 1) / n)
    # alpha_bar is the cumulative product of (1 - beta) and matches the continuous schedule.
    np.testing.assert_allclose(np.cumprod(1.0 - d.betas), d.alphas_cumprod, rtol=1e-9)
    cont = np.asarray(alpha_squared(fn(jnp.asarray(d.times, jnp.float32))))
    np.testing.assert_allclose(d.alphas_cumprod, cont, atol=1e-5)
    assert np.all((d.betas > 0) & (d.betas <= 1))
    assert np.all(np.diff(d.alphas_cumprod) < 0)
    np.testing.assert_allclose(d.alphas_cumprod_prev[1:], d.alphas_cumprod[:-1])
    assert d.alphas_cumprod_prev[0] == 1.0
    np.testing.assert_allclose(d.log_snr, np.asarray(fn(jnp.asarray(d.times))), atol=2e-3)


@pytest.mark.parametrize("name", SCHEDULES)
def test_discretize_inside_jit_is_the_eager_float64_schedule(name):
    # A schedule named inside a jitted function (e.g. a sampler built under an outer jax.jit)
    # is a compile-time constant, equal to the eager float64 one.
    eager = discretize(get_log_snr_fn(name), 40)
    seen = {}

    @jax.jit
    def f(x):
        d = discretize(get_log_snr_fn(name), 40)
        seen["betas"] = d.betas
        return x + jnp.asarray(d.alphas_cumprod, jnp.float32)

    out = f(jnp.zeros(40, jnp.float32))
    assert isinstance(seen["betas"], np.ndarray) and seen["betas"].dtype == np.float64
    np.testing.assert_array_equal(seen["betas"], eager.betas)
    np.testing.assert_array_equal(np.asarray(out), eager.alphas_cumprod.astype(np.float32))


@pytest.mark.parametrize("name", SCHEDULES)
def test_discretize_numpy_route_equals_the_jax_float64_schedule(name):
    # Built-in schedules are discretized through their NumPy version; a user function (here a
    # wrapper without it) goes through JAX in 64-bit mode. Both give the same float64 schedule.
    fn = get_log_snr_fn(name, log_snr_min=-15.0)
    assert fn.numpy_fn is not None

    def jax_only(t):
        return fn(t)

    fast, reference = discretize(fn, 1000), discretize(jax_only, 1000)
    np.testing.assert_allclose(fast.alphas_cumprod, reference.alphas_cumprod, rtol=1e-13)
    np.testing.assert_allclose(fast.betas, reference.betas, rtol=1e-11)
    if name == "cosine":  # the bound keyword argument reached the NumPy version
        assert fast.log_snr[-1] == pytest.approx(-15.0)


def test_linear_discrete_vs_continuous_close():
    exact = linear_beta_schedule(1000)
    np.testing.assert_allclose(exact.betas[[0, -1]], [1e-4, 0.02])
    cont = discretize(get_log_snr_fn("linear"), 1000)
    # First-order agreement: alpha_bar within 1e-3 everywhere, log-SNR within 0.1 nats.
    assert np.max(np.abs(exact.alphas_cumprod - cont.alphas_cumprod)) < 1e-3
    assert np.max(np.abs(exact.log_snr - cont.log_snr)) < 0.1
    # and the final noise level is essentially the same.
    np.testing.assert_allclose(exact.alphas_cumprod[-1], cont.alphas_cumprod[-1], rtol=0.1)


def test_linear_endpoints():
    v = linear_beta_log_snr(jnp.array([0.0, 1.0], jnp.float32))
    assert float(v[0]) == LOG_SNR_MAX
    # -log(expm1(0.1 + 0.5 * 19.9)) = -log(expm1(10.05))
    np.testing.assert_allclose(float(v[1]), -np.log(np.expm1(10.05)), rtol=1e-5)


def test_respacing_from_alphas_cumprod():
    d = linear_beta_schedule(100)
    idx = np.arange(9, 100, 10)
    r = DiscreteSchedule.from_alphas_cumprod(d.alphas_cumprod[idx], d.times[idx])
    np.testing.assert_allclose(np.cumprod(1 - r.betas), d.alphas_cumprod[idx], rtol=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        get_log_snr_fn("sigmoid")
    with pytest.raises(ValueError, match="num_steps"):
        discretize(get_log_snr_fn("cosine"), 0)
    with pytest.raises(ValueError, match="log_snr_min"):
        cosine_log_snr(jnp.zeros(2), log_snr_min=5.0, log_snr_max=1.0)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        DiscreteSchedule(np.full(3, 0.1), np.ones(2), np.ones(3))
