"""Determinism, the compiled loop, input checking and sharding over several devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.tree_util import Partial

from synthaug.diffusion_core.schedules import cosine_log_snr, discretize
from synthaug.samplers import ddim_sample, ddpm_sample

SCHEDULE = discretize(cosine_log_snr, 1000)
SHAPE = (8, 4, 4, 2)


def model_with_params(params, x, t, cond):
    """A small nonlinear model with per-sample reductions and a parameter pytree."""
    h = jnp.tanh(x @ params["w"] + params["b"])
    pooled = jnp.mean(h, axis=(1, 2), keepdims=True)
    return 0.3 * h + 0.2 * pooled + 0.1 * t.reshape(-1, 1, 1, 1) + 0.1 * cond["lowres"]


PARAMS = {"w": jnp.array([[0.9, -0.4], [0.3, 1.1]]), "b": jnp.array([0.1, -0.2])}
COND = {
    "lowres": jax.random.normal(jax.random.key(9), SHAPE),
    "text_emb": jax.random.normal(jax.random.key(8), (8, 3, 2)),
}


def _ddpm(rng, **kw):
    return ddpm_sample(
        Partial(model_with_params, PARAMS),
        SCHEDULE,
        SHAPE,
        rng,
        cond=COND,
        num_steps=25,
        thresholding="dynamic",
        **kw,
    )


def test_same_key_same_samples_other_key_other_samples():
    a, b = _ddpm(jax.random.key(0)), _ddpm(jax.random.key(0))
    c = _ddpm(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0.1
    assert a.dtype == jnp.float32 and a.shape == SHAPE


def test_compiled_once_and_params_are_traced():
    """New parameter values and guidance weights reuse the compiled sampler."""
    from synthaug.samplers.sampling import _sample_jit

    before = _sample_jit._cache_size()
    for scale in (0.5, 1.5, 2.0):
        p = jax.tree.map(lambda a, s=scale: a * s, PARAMS)
        ddpm_sample(
            Partial(model_with_params, p),
            SCHEDULE,
            SHAPE,
            jax.random.key(0),
            cond=COND,
            num_steps=25,
            guidance_scale=scale + 1.0,
            log_var_mix=scale / 2,
        )
    assert _sample_jit._cache_size() - before == 1


def test_the_step_loop_is_a_lax_loop():
    """The compiled program holds one loop whose body calls the model once (no unrolling)."""
    from synthaug.samplers.sampling import _sample_jit

    calls = []

    def model_fn(x, t, cond):
        calls.append(1)
        return 0.5 * x

    jaxpr = jax.make_jaxpr(lambda r: ddpm_sample(model_fn, SCHEDULE, SHAPE, r, num_steps=200))(
        jax.random.key(0)
    )
    text = str(jaxpr)
    assert "scan" in text or "while" in text
    assert len(calls) == 1
    assert _sample_jit is not None


@pytest.mark.parametrize("sampler,axis_type", [("ddpm", "Auto"), ("ddim", "Explicit")])
def test_sharded_batch_gives_the_same_samples(sampler, axis_type):
    assert jax.device_count() >= 4, "conftest sets 4 host devices"
    mesh = jax.make_mesh((4,), ("data",), axis_types=(getattr(jax.sharding.AxisType, axis_type),))
    sharding = NamedSharding(mesh, P("data"))
    fn = ddpm_sample if sampler == "ddpm" else ddim_sample
    kw = dict(cond=COND, num_steps=20, thresholding="dynamic", guidance_scale=1.5)
    if sampler == "ddim":
        kw["eta"] = 0.5
    model = Partial(model_with_params, PARAMS)
    ref = fn(model, SCHEDULE, SHAPE, jax.random.key(4), **kw)
    cond_sharded = {k: jax.device_put(v, sharding) for k, v in COND.items()}
    kw["cond"] = cond_sharded
    out = fn(model, SCHEDULE, SHAPE, jax.random.key(4), sharding=sharding, **kw)
    assert len(out.sharding.device_set) == 4
    assert out.sharding.is_equivalent_to(sharding, out.ndim)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)


def test_bad_inputs_are_named():
    model = Partial(model_with_params, PARAMS)
    with pytest.raises(ValueError, match="cond\\['lowres'\\]"):
        ddpm_sample(model, SCHEDULE, (4, 4, 4, 2), jax.random.key(0), cond=COND)
    with pytest.raises(ValueError, match="prediction_type"):
        ddpm_sample(model, SCHEDULE, SHAPE, jax.random.key(0), cond=COND, prediction_type="e")
    with pytest.raises(ValueError, match="log_var_mix"):
        ddpm_sample(model, SCHEDULE, SHAPE, jax.random.key(0), cond=COND, log_var_mix=1.5)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(model, SCHEDULE, SHAPE, jax.random.key(0), cond=COND, eta=-1.0)
    with pytest.raises(ValueError, match="noise must have shape"):
        ddpm_sample(
            model, SCHEDULE, SHAPE, None, cond=COND, num_steps=5, noise=jnp.zeros((5, *SHAPE))
        )
    with pytest.raises(ValueError, match="rng"):
        ddpm_sample(model, SCHEDULE, SHAPE, None, cond=COND)
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        ddpm_sample(model, "cosine", SHAPE, jax.random.key(0), cond=COND)
    with pytest.raises(ValueError, match="model_fn returned shape"):
        ddpm_sample(lambda x, t, c: x[:, :2], SCHEDULE, SHAPE, jax.random.key(0), num_steps=2)


def test_ddim_eta0_is_deterministic_given_the_initial_noise():
    noise = np.array(jax.random.normal(jax.random.key(0), (11, *SHAPE)))
    model = Partial(model_with_params, PARAMS)
    a = ddim_sample(model, SCHEDULE, SHAPE, None, cond=COND, num_steps=10, noise=noise)
    noise[1:] = 0.0  # only noise[0] matters at eta = 0
    b = ddim_sample(model, SCHEDULE, SHAPE, None, cond=COND, num_steps=10, noise=noise)
    np.testing.assert_array_equal(a, b)
    c = ddim_sample(model, SCHEDULE, SHAPE, None, cond=COND, num_steps=10, noise=noise, eta=1.0)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3
