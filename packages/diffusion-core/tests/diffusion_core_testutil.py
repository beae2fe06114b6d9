"""Helpers shared by the diffusion-core tests."""

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
    """Perturb every parameter randomly (zero-initialised layers made non-trivial).

    Done in NumPy: a jitted version would compile one random-number generator per leaf.
    """
    r = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: jnp.asarray(np.asarray(p) + scale * r.standard_normal(p.shape), p.dtype),
        params,
    )


class Setup:
    def __init__(self, name_or_config, batch_size: int):
        if isinstance(name_or_config, str):
            name_or_config = get_preset(name_or_config)
        self.config = name_or_config
        self.model = make_model(self.config)
        self.batch = make_batch(self.config, batch_size)
        self.state = create_train_state(jax.random.key(0), self.model, self.config, self.batch)
        self._step = None

    @property
    def step(self):
        if self._step is None:
            self._step = make_train_step(self.model, self.config)
        return self._step


def micro_base():
    """A text-conditioned U-Net with the fewest ops (8x8, one level, one res block): for
    tests whose subject is the training step's plumbing (sharding), not the network."""
    config = get_preset("tiny_base")
    config.model.image_size = 8
    config.model.model_channels = 4
    config.model.channel_mult = (1,)
    config.model.attention_resolutions = ()
    config.model.cross_attention_resolutions = ()
    config.model.num_head_channels = 4
    config.model.text_dim = 8
    config.model.text_token_dim = 8
    config.model.num_groups = 2
    return config


def resume_setup():
    """Model, config and a deterministic ``data(step)`` for the checkpoint/resume tests.

    The shapes (tiny_base, batch 4, 6 text tokens) are those of the README example, so the
    compiled training step is shared with it through the persistent compilation cache.
    """
    config = get_preset("tiny_base")
    model = make_model(config)

    def data(step: int) -> dict:
        return make_batch(config, 4, seed=1000 + step)

    return model, config, data
