"""The training state and the model a recipe config describes."""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from synthaug.classifiers import parallel
from synthaug.classifiers.models import get_model
from synthaug.classifiers.optim import make_optimizer, steps_per_epoch_of

__all__ = ["TrainState", "create_train_state", "model_from_config", "variables_of"]


@flax.struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (a plain pytree).

    Attributes:
      step: int32 scalar, the number of steps taken.
      params: the ``params`` collection (float32 whatever the compute dtype).
      batch_stats: the ``batch_stats`` collection (empty dict for models without BN).
      opt_state: the optax state.
      rng: uint32[2] base key; step ``s`` uses ``fold_in(rng, s)``.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array


def model_from_config(config: ml_collections.ConfigDict) -> nn.Module:
    """``get_model(config.model, config.num_classes, **config.model_kwargs, dtype=...)``.

    ``config.dtype`` is the compute dtype (activations, matmuls and convolutions); the
    parameters stay float32 (flax's ``param_dtype``) and the logits are cast to float32.
    """
    kwargs = dict(config.model_kwargs.to_dict()) if config.model_kwargs else {}
    # Lists (a config read from JSON) as tuples: the module is a static jit argument.
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if config.dtype != "float32":
        kwargs["dtype"] = jnp.dtype(config.dtype)
    return get_model(config.model, int(config.num_classes), **kwargs)


def variables_of(state_or_vars: Any) -> dict:
    """``{"params", "batch_stats"}`` of a :class:`TrainState` (or a variables dict as is)."""
    if isinstance(state_or_vars, TrainState):
        v = {"params": state_or_vars.params}
        if state_or_vars.batch_stats:
            v["batch_stats"] = state_or_vars.batch_stats
        return v
    return dict(state_or_vars)


def create_train_state(
    model: nn.Module,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    *,
    steps_per_epoch: int | None = None,
    mesh: Mesh | None = None,
) -> TrainState:
    """Initialise parameters, BatchNorm statistics and the optimiser state.

    Args:
      model: a module from :func:`get_model`.
      config: a recipe config.
      rng: PRNG key (split into an init key and the run's base key).
      steps_per_epoch: default ``train_examples // batch_size``.
      mesh: if given, the state is created replicated on it (every process of a
        multi-process mesh calls this with the same key).

    Returns:
      a :class:`TrainState` at step 0.
    """
    spe = int(steps_per_epoch or steps_per_epoch_of(config))
    k_init, k_run = jax.random.split(rng)
    if jnp.issubdtype(k_run.dtype, jax.dtypes.prng_key):
        k_run = jax.random.key_data(k_run)
    spec = (model, compiled_config(config), spe, mesh)
    return _init(k_init, k_run, spec=spec)


# Recipe keys the host loop reads but no compiled step does: neutral values in the jit cache
# key, so fits that differ only in them (e.g. a seed sweep) share compiled programs.
HOST_ONLY_KEYS = ("seed", "checkpoint_every_steps", "checkpoint_max_to_keep", "log_every_steps")


def compiled_config(config) -> ml_collections.FrozenConfigDict:
    """``config`` frozen, with :data:`HOST_ONLY_KEYS` set to 0 (a jit static argument)."""
    c = ml_collections.ConfigDict(config.to_dict())
    for k in HOST_ONLY_KEYS:
        if k in c:
            c[k] = type(c[k])(0)
    return ml_collections.FrozenConfigDict(c)


@functools.partial(jax.jit, static_argnames="spec")
def _init(k_init, k_run, *, spec) -> TrainState:
    model, config, spe, mesh = spec
    tx, _ = make_optimizer(config, spe)
    size = int(config.image_size)
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    variables = model.init({"params": k_init, "dropout": k_init}, x, train=False)
    params = variables["params"]
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=k_run,
    )
    if mesh is not None:
        state = jax.lax.with_sharding_constraint(state, parallel.replicated(mesh))
    return state
