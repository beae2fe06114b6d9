"""Classifier-free guidance (one doubled-batch call) and thresholding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.diffusion_core.schedules import cosine_log_snr, discretize
from synthaug.samplers import (
    abs_percentile,
    ddim_sample,
    ddpm_sample,
    dynamic_threshold,
    guided_prediction,
    static_threshold,
    threshold,
    unconditional_cond,
)

SCHEDULE = discretize(cosine_log_snr, 1000)
B = 3


def _cond(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    return {
        "text_emb": jax.random.normal(k1, (B, 5, 4)),
        "text_mask": jnp.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], bool),
        "lowres": jax.random.normal(k2, (B, 4, 4, 2)),
        "aug_level": jax.random.uniform(k3, (B,)),
    }


def _cond_model(record=None):
    """A model whose output depends on x, t and every conditioning input."""

    def model_fn(x, t, cond):
        if record is not None:
            record.append(x.shape[0])
        emb = jnp.sum(cond["text_emb"] * cond["text_mask"][..., None], axis=(1, 2))
        shape = (-1, 1, 1, 1)
        return (
            0.5 * jnp.tanh(x)
            + 0.2 * cond["lowres"]
            + 0.1 * emb.reshape(shape)
            + 0.05 * (t + cond["aug_level"]).reshape(shape)
        )

    return model_fn


def test_unconditional_cond_drops_text_only():
    cond = _cond()
    u = unconditional_cond(cond)
    assert np.all(np.asarray(u["text_emb"]) == 0) and u["text_emb"].shape == (B, 5, 4)
    assert u["text_mask"].dtype == jnp.bool_ and not np.any(np.asarray(u["text_mask"]))
    np.testing.assert_array_equal(u["lowres"], cond["lowres"])
    np.testing.assert_array_equal(u["aug_level"], cond["aug_level"])
    with pytest.raises(KeyError, match="text_emb"):
        unconditional_cond({"lowres": cond["lowres"]})


@pytest.mark.parametrize("w", [1.0, 1.25, 3.0, 0.0])
def test_guided_prediction_is_imagen_combination_in_one_call(w):
    calls = []
    model_fn = _cond_model(calls)
    cond = _cond()
    x = jax.random.normal(jax.random.key(1), (B, 4, 4, 2))
    t = jnp.full((B,), 0.3)
    got = guided_prediction(model_fn, x, t, cond, guidance_scale=w)
    assert calls == [2 * B]  # one call on the doubled batch
    c = model_fn(x, t, cond)
    u = model_fn(x, t, unconditional_cond(cond))
    np.testing.assert_allclose(got, w * c + (1 - w) * u, atol=1e-6)
    assert not np.allclose(c, u)


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_sampler_guidance_equals_two_call_reference(sampler):
    model_fn = _cond_model()
    w = 1.7

    def two_call_model(x, t, cond):
        return w * model_fn(x, t, cond) + (1 - w) * model_fn(x, t, unconditional_cond(cond))

    kw = dict(cond=_cond(), num_steps=12, thresholding="dynamic")
    guided = sampler(model_fn, SCHEDULE, (B, 4, 4, 2), jax.random.key(5), guidance_scale=w, **kw)
    ref = sampler(two_call_model, SCHEDULE, (B, 4, 4, 2), jax.random.key(5), **kw)
    off = sampler(model_fn, SCHEDULE, (B, 4, 4, 2), jax.random.key(5), **kw)
    np.testing.assert_allclose(guided, ref, atol=1e-5)
    assert np.abs(np.asarray(guided) - np.asarray(off)).max() > 1e-2


def test_no_guidance_calls_model_on_batch_b_and_guidance_needs_text():
    calls = []
    ddpm_sample(
        _cond_model(calls), SCHEDULE, (B, 4, 4, 2), jax.random.key(0), cond=_cond(), num_steps=3
    )
    assert calls == [B]
    cond = _cond()
    del cond["text_emb"]
    with pytest.raises(KeyError, match="text_emb"):
        ddpm_sample(
            _cond_model(),
            SCHEDULE,
            (B, 4, 4, 2),
            jax.random.key(0),
            cond=cond,
            guidance_scale=2.0,
            num_steps=3,
        )


def test_dynamic_threshold_matches_numpy():
    x = np.asarray(jax.random.normal(jax.random.key(2), (4, 6, 6, 3))) * np.array(
        [0.3, 1.5, 3.0, 8.0]
    ).reshape(-1, 1, 1, 1)
    for p in (99.5, 95.0, 50.0):
        got = np.asarray(dynamic_threshold(jnp.asarray(x, jnp.float32), percentile=p))
        s = np.maximum(np.percentile(np.abs(x).reshape(4, -1), p, axis=1), 1.0)
        want = np.clip(x, -s[:, None, None, None], s[:, None, None, None]) / s[:, None, None, None]
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)
    # Samples already inside [-1, 1] are unchanged; the percentile matters.
    np.testing.assert_allclose(
        np.asarray(dynamic_threshold(jnp.asarray(x[:1] * 0.5)))[0], x[0] * 0.5, atol=1e-7
    )
    a = np.asarray(dynamic_threshold(jnp.asarray(x), percentile=99.5))
    b = np.asarray(dynamic_threshold(jnp.asarray(x), percentile=90.0))
    assert np.abs(a - b).max() > 1e-2 and np.abs(b).max() <= 1.0 + 1e-6


def test_abs_percentile_matches_numpy_linear_incl_ties_and_small_sizes():
    rng = np.random.default_rng(0)
    scales = np.array([0.01, 1.0, 1.0, 300.0, 1.0, 1.0], np.float32)[:, None]
    for n in (1, 2, 3, 10, 768):
        x = rng.standard_normal((6, n)).astype(np.float32) * scales
        x[4:] = np.round(x[4:] * 2) / 2  # rows with many exact duplicates, both signs
        for q in (99.5, 100.0, 50.0, 37.3, 1e-3):
            got = np.asarray(abs_percentile(jnp.asarray(x), percentile=q))
            want = np.percentile(np.abs(x), q, axis=1)
            np.testing.assert_allclose(got, want, rtol=3e-7, atol=0, err_msg=f"{n=} {q=}")


def test_abs_percentile_exact_cases_nan_and_traced_percentile():
    x = jnp.array([[-4.0, 1.0, 2.0, 3.0, -3.0]])  # |x| sorted: 1 2 3 3 4
    for q, want in ((0.0 + 1e-9, 1.0), (50.0, 3.0), (62.5, 3.0), (87.5, 3.5), (100.0, 4.0)):
        np.testing.assert_allclose(abs_percentile(x, percentile=q), [want], rtol=1e-6)
    y = jnp.array([[0.5, jnp.nan, 2.0], [0.5, 1.0, jnp.inf]])
    got = np.asarray(abs_percentile(y, percentile=50.0))
    assert np.isnan(got[0]) and got[1] == 1.0
    with pytest.raises(ValueError, match="percentile"):
        abs_percentile(x, percentile=0.0)
    with pytest.raises(ValueError, match="batch dimension"):
        abs_percentile(jnp.ones(4))
    # A traced percentile is accepted (sort-based path) and gives the same values.
    z = jax.random.normal(jax.random.key(4), (4, 5, 5, 3))
    traced = jax.jit(lambda z, p: abs_percentile(z, percentile=p))(z, 97.0)
    want = np.percentile(np.abs(np.asarray(z)).reshape(4, -1), 97.0, axis=1)
    np.testing.assert_allclose(traced, want, rtol=1e-5)
    np.testing.assert_allclose(abs_percentile(z, percentile=jnp.float32(97.0)), want, rtol=1e-6)


def test_sampler_percentile_is_static_and_must_be_concrete():
    model_fn = _cond_model()
    kw = dict(cond=_cond(), num_steps=4, thresholding="dynamic")
    shape = (B, 4, 4, 2)
    a = ddim_sample(model_fn, SCHEDULE, shape, jax.random.key(1), threshold_percentile=90, **kw)
    b = ddim_sample(
        model_fn, SCHEDULE, shape, jax.random.key(1), threshold_percentile=np.float32(90), **kw
    )
    np.testing.assert_array_equal(a, b)

    @jax.jit
    def traced(p):
        return ddim_sample(
            model_fn, SCHEDULE, shape, jax.random.key(1), threshold_percentile=p, **kw
        )

    with pytest.raises(ValueError, match="threshold_percentile must be a concrete number"):
        traced(90.0)


def test_static_threshold_and_threshold_dispatch():
    x = jnp.array([[-3.0, -0.5, 0.2, 2.0]])
    np.testing.assert_array_equal(static_threshold(x), jnp.array([[-1.0, -0.5, 0.2, 1.0]]))
    np.testing.assert_array_equal(threshold(x, method=None), x)
    np.testing.assert_array_equal(threshold(x, method="static"), static_threshold(x))
    with pytest.raises(ValueError, match="thresholding"):
        threshold(x, method="clip")
    with pytest.raises(ValueError, match="percentile"):
        threshold(x, method="dynamic", percentile=0.0)
