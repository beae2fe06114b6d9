"""The jitted train, eval and feature steps.

Each step is one module-level ``jax.jit`` function whose static argument is the model, the
(frozen) recipe config, the steps per epoch and the mesh: JAX's own jit cache compiles a
step once per distinct recipe, so repeated fits with one recipe (the demo's real,
synthetic and mixed classifiers) share one compiled program, and nothing else is kept.

With a mesh, the batch arrives split over the mesh's devices and the state replicated; the
step is one GSPMD program, so gradients and BatchNorm's batch mean and variance are
reductions over the *global* batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from synthaug.classifiers import augment, parallel
from synthaug.classifiers.optim import make_optimizer, steps_per_epoch_of
from synthaug.classifiers.preprocess import prepare_images
from synthaug.classifiers.recipes import validate_config
from synthaug.classifiers.state import TrainState, compiled_config, variables_of

__all__ = ["make_eval_step", "make_feature_fn", "make_train_step"]


def _spec(model, config, mesh, *extra) -> tuple:
    return (model, compiled_config(config), mesh, *extra)


def make_train_step(
    model: nn.Module,
    config: ml_collections.ConfigDict,
    mesh: Mesh | None = None,
    *,
    steps_per_epoch: int | None = None,
    donate: bool = False,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """A jitted ``train_step(state, batch) -> (state, metrics)``.

    ``batch`` is ``{"images": uint8 [B, H, W, 3], "labels": int [B]}``. The step derives its
    randomness from ``fold_in(state.rng, state.step)``, builds smoothed one-hot targets,
    applies the configured augmentation and Mixup/CutMix, and takes one optimiser step.
    With ``mesh``, the state is replicated and the batch split over the mesh's devices
    (:func:`shard_batch`); BatchNorm statistics are then computed over the global batch.

    Args:
      model: a module from :func:`get_model`.
      config: a recipe config.
      mesh: optional mesh.
      steps_per_epoch: for the lr schedule (default ``train_examples // batch_size``).
      donate: donate the input state's buffers.

    Returns:
      the step; metrics (device scalars, not fetched) are ``loss``, ``top1`` (against the
      unmixed labels), ``lr``, ``grad_norm`` and ``finite`` (loss, gradients and update
      all finite).
    """
    validate_config(config)
    spe = int(steps_per_epoch or steps_per_epoch_of(config))
    step = _train_step_donated if donate else _train_step
    return functools.partial(step, spec=_spec(model, config, mesh, spe))


def _train_step_impl(state: TrainState, batch: dict, *, spec) -> tuple[TrainState, dict]:
    model, config, mesh, spe = spec
    tx, schedule = make_optimizer(config, spe)
    num_classes = int(config.num_classes)
    smoothing = float(config.label_smoothing)
    images, labels = batch["images"], batch["labels"]
    chex.assert_rank(images, 4)
    chex.assert_rank(labels, 1)
    chex.assert_equal_shape_prefix([images, labels], 1)
    rng = jax.random.fold_in(state.rng, state.step)
    k_aug, k_mix, k_drop = jax.random.split(rng, 3)
    x = prepare_images(images, config, key=k_aug, train=True)
    targets = jax.nn.one_hot(labels, num_classes)
    targets = targets * (1.0 - smoothing) + smoothing / num_classes
    if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
        if config.get("mixup_mode", "timm") == "big_vision":
            x, targets = augment.mixup_roll(k_mix, x, targets, alpha=float(config.mixup_alpha))
        else:
            x, targets = augment.mixup_cutmix(
                k_mix,
                x,
                targets,
                mixup_alpha=float(config.mixup_alpha),
                cutmix_alpha=float(config.cutmix_alpha),
                prob=float(config.mixup_prob),
                switch_prob=float(config.mixup_switch_prob),
            )
    if mesh is not None:
        x = jax.lax.with_sharding_constraint(x, parallel.batch_sharding(mesh))
    has_bn = bool(jax.tree_util.tree_leaves(state.batch_stats))

    def loss_fn(params):
        variables = {"params": params}
        if has_bn:
            variables["batch_stats"] = state.batch_stats
            logits, updates = model.apply(
                variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": k_drop}
            )
            new_stats = updates["batch_stats"]
        else:
            logits = model.apply(variables, x, train=True, rngs={"dropout": k_drop})
            new_stats = state.batch_stats
        logits = logits.astype(jnp.float32)
        loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
        return loss, (logits, new_stats)

    (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = _norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(_norm(updates))
    metrics = {
        "loss": loss,
        "top1": jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32)),
        "lr": schedule(state.step),
        "grad_norm": grad_norm,
        "finite": finite,
    }
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state
    )
    if mesh is not None:
        new_state, metrics = jax.lax.with_sharding_constraint(
            (new_state, metrics), parallel.replicated(mesh)
        )
    return new_state, metrics


def _norm(tree) -> jax.Array:
    """Global L2 norm of a pytree, in float32."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


_train_step = jax.jit(_train_step_impl, static_argnames="spec")
_train_step_donated = jax.jit(_train_step_impl, static_argnames="spec", donate_argnums=0)


def make_eval_step(
    model: nn.Module, config: ml_collections.ConfigDict, mesh: Mesh | None = None
) -> Callable[[Any, dict], dict]:
    """A jitted ``eval_step(state, batch) -> sums``.

    ``batch`` is ``{"images", "labels", "mask"}`` where ``mask`` (bool/float ``[B]``) marks
    real examples (padding is 0). Returns sums over the real examples: ``correct1``,
    ``correct5`` (int32), ``loss`` (float32, cross-entropy) and ``count`` (int32), and
    ``bad_labels``, the number of real examples whose label is outside
    ``[0, num_classes)``. Top-5 is top-min(5, num_classes).

    Args:
      model: a module from :func:`get_model`.
      config: a recipe config (preprocessing).
      mesh: optional mesh; the batch is split over its devices.

    Returns:
      the step; ``state`` is a :class:`TrainState` or a variables dict.
    """
    return functools.partial(_eval_step, spec=_spec(model, _eval_config(config), mesh))


def _eval_config(config) -> ml_collections.ConfigDict:
    """The keys evaluation depends on (so that recipes differing in training only share it)."""
    keys = ("image_size", "mean", "std", "num_classes", "augment", "randaugment")
    return ml_collections.ConfigDict({k: config[k] for k in keys} | {"random_erase_prob": 0.0})


@functools.partial(jax.jit, static_argnames="spec")
def _eval_step(state, batch, *, spec):
    model, config, mesh = spec
    k = min(5, int(config.num_classes))
    images, labels, mask = batch["images"], batch["labels"], batch["mask"]
    chex.assert_rank(images, 4)
    chex.assert_rank([labels, mask], 1)
    x = prepare_images(images, config, train=False)
    logits = model.apply(variables_of(state), x, train=False).astype(jnp.float32)
    m = mask.astype(jnp.int32)
    bad = (labels < 0) | (labels >= int(config.num_classes))
    c1 = jnp.argmax(logits, -1) == labels
    _, topk = jax.lax.top_k(logits, k)
    c5 = jnp.any(topk == labels[:, None], axis=-1)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(bad, 0, labels))
    out = {
        "correct1": jnp.sum(c1.astype(jnp.int32) * m),
        "correct5": jnp.sum(c5.astype(jnp.int32) * m),
        "loss": jnp.sum(jnp.where(m > 0, loss, 0.0)),
        "count": jnp.sum(m),
        "bad_labels": jnp.sum(bad.astype(jnp.int32) * m),
    }
    if mesh is not None:
        out = jax.lax.with_sharding_constraint(out, parallel.replicated(mesh))
    return out


def make_feature_fn(
    model: nn.Module, config: ml_collections.ConfigDict, mesh: Mesh | None = None
) -> Callable[[Any, jax.Array], jax.Array]:
    """A jitted ``features(state, images) -> [B, D]`` (penultimate-layer features)."""
    return functools.partial(_features, spec=_spec(model, _eval_config(config), mesh))


@functools.partial(jax.jit, static_argnames="spec")
def _features(state, images, *, spec):
    model, config, mesh = spec
    x = prepare_images(images, config, train=False)
    out = model.apply(variables_of(state), x, train=False, return_features=True)
    if mesh is not None:
        out = jax.lax.with_sharding_constraint(out, parallel.batch_sharding(mesh))
    return out
