"""The sampler drives a real diffusion-core U-Net through UNetModelFn (tiny presets)."""

import jax
import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core import abstract_params, get_preset, make_model
from synthaug.samplers import CascadeStage, UNetModelFn, cascade_sample

B, L = 2, 4


def _random_params(cfg, seed):
    """Random parameters in the network's shapes, drawn in NumPy: ``model.init`` would
    compile a program of hundreds of random-number generators, one per parameter array
    (tens of seconds on a CPU), and the sampler only needs some network to drive."""
    r = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(0.2 * r.standard_normal(a.shape), a.dtype), abstract_params(cfg)
    )


def _init(preset, seed):
    cfg = get_preset(preset)
    model, m = make_model(cfg), cfg.model
    te = jax.random.normal(jax.random.key(1), (B, L, m.text_dim))
    tm = jnp.array([[True, True, False, False], [True, False, False, False]])
    return model, _random_params(cfg, seed), {"text_emb": te, "text_mask": tm}, m.image_size


def test_cascade_with_tiny_unets():
    base, base_params, cond, s0 = _init("tiny_base", 0)
    sr, sr_params, _, s1 = _init("tiny_sr", 1)
    stages = [
        CascadeStage(
            model_fn=UNetModelFn(base.apply),
            params=base_params,
            schedule="cosine",
            resolution=s0,
            guidance_scale=1.25,
            num_steps=2,
        ),
        CascadeStage(
            model_fn=UNetModelFn(sr.apply),
            params=sr_params,
            schedule="cosine",
            resolution=s1,
            guidance_scale=1.5,
            log_var_mix=0.1,
            num_steps=2,
            sampler="ddim",
        ),
    ]
    outs = cascade_sample(stages, jax.random.key(3), cond=cond)
    assert [o.shape for o in outs] == [(B, s0, s0, 3), (B, s1, s1, 3)]
    assert all(np.isfinite(np.asarray(o)).all() for o in outs)
    # Each stage's last step returns its dynamically thresholded x0 prediction.
    assert all(float(jnp.abs(o).max()) <= 1.0 + 1e-5 for o in outs)
