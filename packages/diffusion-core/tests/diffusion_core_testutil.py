"""Helpers shared by the diffusion-core tests."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core import (
    create_train_state,
    get_preset,
    make_model,
    make_train_step,
)


def make_batch(config, batch_size: int, seed: int = 0, text_len: int = 6) -> dict:
    """A deterministic random batch with the shapes a preset expects."""
    r = np.random.default_rng(seed)
    s = config.model.image_size
    batch = {
        "image": jnp.asarray(r.uniform(-1, 1, (batch_size, s, s, 3)), jnp.float32),
        "text_emb": jnp.asarray(
            r.normal(size=(batch_size, text_len, config.model.text_dim)), jnp.float32
        ),
        "text_mask": jnp.asarray(
            np.arange(text_len)[None, :] < r.integers(1, text_len + 1, (batch_size, 1))
        ),
    }
    lo = config.diffusion.lowres_size
    if lo:
        batch["lowres"] = jnp.asarray(r.uniform(-1, 1, (batch_size, lo, lo, 3)), jnp.float32)
    return batch


def randomize(params, seed: int = 0, scale: float = 0.2):
    """Perturb every parameter randomly (zero-initialised layers made non-trivial)."""
    return _randomize(params, seed, scale)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _randomize(params, seed, scale):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [
            p + scale * jax.random.normal(k, p.shape, p.dtype)
            for p, k in zip(leaves, keys, strict=True)
        ],
    )


class Setup:
    def __init__(self, name: str, batch_size: int):
        self.config = get_preset(name)
        self.model = make_model(self.config)
        self.batch = make_batch(self.config, batch_size)
        self.state = create_train_state(jax.random.key(0), self.model, self.config, self.batch)
        self._step = None

    @property
    def step(self):
        if self._step is None:
            self._step = make_train_step(self.model, self.config)
        return self._step


def resume_setup():
    """Model, config and a deterministic ``data(step)`` for the checkpoint/resume tests."""
    config = get_preset("tiny_base")
    config.train.ema_decay = 0.9
    model = make_model(config)

    def data(step: int) -> dict:
        return make_batch(config, 2, seed=1000 + step)

    return model, config, data
