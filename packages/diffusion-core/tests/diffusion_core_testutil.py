"""Helpers shared by the diffusion-core tests."""

import jax
import jax.numpy as jnp
import numpy as np

from synthaug.diffusion_core import (
    abstract_params,
    create_train_state,
    get_preset,
    make_model,
    make_train_step,
    param_path,
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


def random_params(config, seed: int = 0, scale: float = 0.2):
    """Random parameters for a config's network, drawn in NumPy from its abstract shapes.

    Normalisation scales are ``1 + scale * N(0, 1)``, everything else ``scale * N(0, 1)``
    (so zero-initialised layers are non-trivial too). Nothing is compiled: the tests whose
    subject is the network's function need no initialisation program.
    """
    r = np.random.default_rng(seed)

    def draw(path, s):
        centre = 1.0 if param_path(path).endswith("scale") else 0.0
        return jnp.asarray(centre + scale * r.standard_normal(s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract_params(config))


class _Network:
    def __init__(self, name_or_config, batch_size: int):
        if isinstance(name_or_config, str):
            name_or_config = get_preset(name_or_config)
        self.config = name_or_config
        self.model = make_model(self.config)
        self.batch = make_batch(self.config, batch_size)


class Net(_Network):
    """A network for forward-pass tests: config, model, a batch and random parameters."""

    def __init__(self, name_or_config, batch_size: int):
        super().__init__(name_or_config, batch_size)
        self.params = random_params(self.config)


class Setup(_Network):
    """A network with a training state and its (lazily built) jitted train step."""

    def __init__(self, name_or_config, batch_size: int):
        super().__init__(name_or_config, batch_size)
        self.state = create_train_state(jax.random.key(0), self.model, self.config, self.batch)
        self._step = None

    @property
    def step(self):
        if self._step is None:
            self._step = make_train_step(self.model, self.config)
        return self._step


def micro_base():
    """A text-conditioned U-Net with the fewest ops (8x8, one level, one res block) and the
    flattened Adam: for tests whose subject is training (learning, sharding, checkpoints,
    resuming), not the network."""
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
    # Learns visibly within the 60 steps of the learning test.
    config.optimizer.learning_rate = 1e-2
    config.optimizer.warmup_steps = 5
    config.optimizer.flatten = True  # fewer ops to compile
    return config


def micro_sr():
    """A text-conditioned Efficient U-Net with the fewest ops (4->8, one block with
    cross-attention): for tests of the super-resolution training step and fine-tuning."""
    config = get_preset("tiny_sr")
    m = config.model
    m.image_size = 8
    m.initial_channels = 4
    m.block_channels = (4,)
    m.num_res_blocks = (1,)
    m.block_strides = (1,)
    m.self_attention = (False,)
    m.cross_attention = (True,)
    m.num_heads = 1
    m.embed_dim = 8
    m.text_dim = 8
    m.text_token_dim = 8
    m.num_groups = 2
    config.diffusion.lowres_size = 4
    config.optimizer.flatten = True  # fewer ops to compile
    return config


def resume_setup():
    """Model, config and a deterministic ``data(step)`` for the checkpoint/resume tests.

    The network is :func:`micro_base` (the subject is the training loop, not the network):
    the fewer ops and parameters, the quicker the compiles and the checkpoints.
    """
    config = micro_base()
    model = make_model(config)

    def data(step: int) -> dict:
        return make_batch(config, 4, seed=1000 + step)

    return model, config, data
