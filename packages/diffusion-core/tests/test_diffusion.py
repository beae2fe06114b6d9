import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core import (
    PREDICTION_TYPES,
    alpha_sigma,
    augment_lowres,
    diffusion_loss,
    drop_text,
    eps_and_x0,
    get_log_snr_fn,
    predict_x0_eps,
    prediction_target,
    q_sample,
    upsample_lowres,
)


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_prediction_roundtrip(ptype):
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(k1, (3, 4, 4, 2), minval=-1, maxval=1)
    eps = jax.random.normal(k2, x.shape)
    log_snr = jnp.array([-5.0, 0.0, 5.0])
    z = q_sample(x=x, eps=eps, log_snr=log_snr)
    target = prediction_target(x=x, eps=eps, log_snr=log_snr, prediction_type=ptype)
    x0, e = predict_x0_eps(z=z, model_output=target, log_snr=log_snr, prediction_type=ptype)
    np.testing.assert_allclose(x0, x, atol=2e-4 if ptype != "eps" else 5e-3)
    np.testing.assert_allclose(e, eps, atol=2e-4 if ptype != "x0" else 5e-3)


def test_q_sample_moments():
    x = jnp.full((20000, 1, 1, 1), 0.5)
    eps = jax.random.normal(jax.random.key(1), x.shape)
    log_snr = jnp.full((20000,), 1.0)
    z = q_sample(x=x, eps=eps, log_snr=log_snr)
    a, s = alpha_sigma(jnp.asarray(1.0))
    assert abs(float(jnp.mean(z)) - 0.5 * float(a)) < 0.02
    assert abs(float(jnp.std(z)) - float(s)) < 0.02


def test_drop_text_rate_and_zeroing():
    te = jnp.ones((4000, 3, 2))
    tm = jnp.ones((4000, 3), bool)
    te2, tm2 = drop_text(te, tm, rng=jax.random.key(2), p_uncond=0.1)
    dropped = ~jnp.any(tm2, axis=1)
    assert 0.08 < float(jnp.mean(dropped)) < 0.12
    assert bool(jnp.all(jnp.where(dropped[:, None, None], te2 == 0, te2 == 1)))


def test_augment_lowres_levels():
    lo = jax.random.uniform(jax.random.key(3), (8, 4, 4, 3), minval=-1, maxval=1)
    clean = upsample_lowres(lo, size=8)
    a0 = augment_lowres(lo, rng=jax.random.key(4), aug_level=jnp.zeros(8), out_size=8)
    assert a0.shape == (8, 8, 8, 3)
    np.testing.assert_allclose(a0, clean, atol=1e-3)
    a1 = augment_lowres(lo, rng=jax.random.key(4), aug_level=jnp.ones(8), out_size=8)
    # At level 1 the signal is gone: correlation with the clean image ~ 0.
    corr = np.corrcoef(np.asarray(a1).ravel(), np.asarray(clean).ravel())[0, 1]
    assert abs(corr) < 0.15
    mid = augment_lowres(lo, rng=jax.random.key(4), aug_level=jnp.full((8,), 0.5), out_size=8)
    err = lambda a: float(jnp.mean((a - clean) ** 2))  # noqa: E731
    assert err(a0) < err(mid) < err(a1)


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
@pytest.mark.parametrize("is_sr", [False, True])
def test_loss_is_zero_for_an_oracle(ptype, is_sr):
    """An oracle that knows x returns the exact target: the loss must vanish."""
    log_snr_fn = get_log_snr_fn("cosine")
    x = jax.random.uniform(jax.random.key(5), (4, 8, 8, 3), minval=-1, maxval=1)
    batch = {"image": x, "text_emb": jnp.ones((4, 2, 3)), "text_mask": jnp.ones((4, 2), bool)}
    if is_sr:
        batch["lowres"] = x[:, ::2, ::2]
    seen = {}

    def oracle(params, z, t, text_emb, text_mask, *, lowres, aug_level, rng):
        seen.update(lowres=lowres, aug_level=aug_level, t=t)
        log_snr = log_snr_fn(t)
        alpha, sigma = alpha_sigma(log_snr)
        eps = (z - alpha[:, None, None, None] * x) / sigma[:, None, None, None]
        return prediction_target(x=x, eps=eps, log_snr=log_snr, prediction_type=ptype)

    loss, aux = diffusion_loss(
        oracle,
        None,
        batch,
        rng=jax.random.key(6),
        log_snr_fn=log_snr_fn,
        prediction_type=ptype,
        is_sr=is_sr,
    )
    assert float(loss) < 1e-6 if ptype != "eps" else float(loss) < 1e-3
    assert aux["per_example_loss"].shape == (4,)
    assert bool(jnp.all((seen["t"] >= 0) & (seen["t"] <= 1)))
    if is_sr:
        assert seen["lowres"].shape == x.shape and seen["aug_level"].shape == (4,)
    else:
        assert seen["lowres"] is None


def test_loss_of_a_zero_predictor_is_the_target_variance():
    log_snr_fn = get_log_snr_fn("cosine")
    x = jnp.zeros((64, 8, 8, 3))
    zero = lambda params, z, *a, **k: jnp.zeros_like(z)  # noqa: E731
    loss, _ = diffusion_loss(
        zero,
        None,
        {"image": x},
        rng=jax.random.key(7),
        log_snr_fn=log_snr_fn,
        prediction_type="eps",
    )
    assert abs(float(loss) - 1.0) < 0.05  # E[eps^2] = 1


def test_bad_prediction_type():
    with pytest.raises(ValueError, match="prediction_type"):
        prediction_target(
            x=jnp.zeros(1), eps=jnp.zeros(1), log_snr=jnp.zeros(1), prediction_type="score"
        )


def test_eps_and_x0_are_consistent():
    # The conversion the samplers use, with a discrete schedule's (alpha, sigma).
    k1, k2 = jax.random.split(jax.random.key(3))
    x0, eps = jax.random.normal(k1, (2, 5)), jax.random.normal(k2, (2, 5))
    a, s = 0.6, 0.8
    x = a * x0 + s * eps
    for ptype, pred in (("eps", eps), ("x0", x0), ("v", a * eps - s * x0)):
        e, z = eps_and_x0(pred, x, alpha=a, sigma=s, prediction_type=ptype)
        np.testing.assert_allclose(e, eps, atol=1e-5)
        np.testing.assert_allclose(z, x0, atol=1e-5)
    with pytest.raises(ValueError, match="prediction_type"):
        eps_and_x0(eps, x, alpha=a, sigma=s, prediction_type="epsilon")


def test_augment_lowres_with_one_level_and_upsample():
    # The sampling-time use: one level for the whole batch.
    x = jax.random.uniform(jax.random.key(3), (2, 4, 4, 3), minval=-1, maxval=1)
    up = upsample_lowres(x, size=8)
    assert up.shape == (2, 8, 8, 3) and float(jnp.abs(up).max()) <= 1.0 + 1e-6
    const = upsample_lowres(jnp.full((2, 4, 4, 3), 0.25), size=16)
    np.testing.assert_allclose(const, np.full((2, 16, 16, 3), 0.25), atol=1e-6)
    y = augment_lowres(x, rng=jax.random.key(4), aug_level=0.0, out_size=4)
    np.testing.assert_allclose(y, x, atol=1e-3)
    one = augment_lowres(x, rng=jax.random.key(5), aug_level=0.5, out_size=8)
    each = augment_lowres(x, rng=jax.random.key(5), aug_level=jnp.full((2,), 0.5), out_size=8)
    np.testing.assert_array_equal(one, each)
    with pytest.raises(AssertionError):
        augment_lowres(x, rng=jax.random.key(5), aug_level=jnp.zeros(3), out_size=8)
    with pytest.raises(AssertionError):
        upsample_lowres(x[0], size=8)
