"""The recipe's optimiser and learning-rate schedule, built from optax's pieces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from synthaug.classifiers.recipes import peak_learning_rate, validate_config

__all__ = [
    "learning_rate_schedule",
    "make_optimizer",
    "num_steps",
    "steps_per_epoch_of",
    "total_steps",
    "warmup_steps",
    "weight_decay_mask",
]

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "dist_token")


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """``config.total_steps`` if set, else ``epochs * steps_per_epoch``."""
    if config.total_steps and config.total_steps > 0:
        return int(config.total_steps)
    return int(config.epochs) * int(steps_per_epoch)


def steps_per_epoch_of(config: ml_collections.ConfigDict) -> int:
    """``train_examples // batch_size`` (the last partial batch of an epoch is dropped)."""
    if config.train_examples < config.batch_size:
        raise ValueError(
            f"config.train_examples ({config.train_examples}) must be >= config.batch_size "
            f"({config.batch_size})"
        )
    return int(config.train_examples) // int(config.batch_size)


def num_steps(config: ml_collections.ConfigDict, n_examples: int) -> int:
    """Optimiser steps ``fit`` takes for ``n_examples`` training images."""
    return total_steps(config, max(n_examples // int(config.batch_size), 1))


def warmup_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """``config.warmup_steps`` if set, else ``round(warmup_epochs * steps_per_epoch)``."""
    if config.get("warmup_steps", 0) and config.warmup_steps > 0:
        return int(config.warmup_steps)
    return int(round(float(config.warmup_epochs) * steps_per_epoch))


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
    """Linear warmup from 0 to the peak lr, then cosine (to ``min_lr``), step or constant.

    Built from optax's combinators: ``warmup_cosine_decay_schedule`` for ``"cosine"``, and
    ``join_schedules`` of a ``linear_schedule`` warmup with a ``piecewise_constant_schedule``
    (x0.1 at each of ``step_boundaries`` epochs) or a ``constant_schedule``.

    Args:
      config: a recipe config (``base_lr``, ``lr_batch_base``, ``batch_size``,
        ``warmup_epochs`` / ``warmup_steps``, ``schedule``, ``min_lr``,
        ``step_boundaries``, ``epochs`` / ``total_steps``).
      steps_per_epoch: optimiser steps per epoch.

    Returns:
      ``schedule(step) -> lr``.
    """
    peak = peak_learning_rate(config)
    warm = warmup_steps(config, steps_per_epoch)
    total = total_steps(config, steps_per_epoch)
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=warm,
            decay_steps=max(total, warm + 1),
            end_value=float(config.min_lr),
        )
    if config.schedule == "step":
        # The boundaries count from step 0; after the warmup the schedule's clock starts
        # at ``warm``, hence the shift.
        after = optax.piecewise_constant_schedule(
            peak, {int(b * steps_per_epoch) - warm: 0.1 for b in config.step_boundaries}
        )
    else:
        after = optax.constant_schedule(peak)
    warmup = optax.linear_schedule(0.0, peak, warm)
    return optax.join_schedules([warmup, after], [warm])


def weight_decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: kernels (ndim > 1), not BN/LN or biases,
    not the ViT position embedding or class/distillation tokens."""

    def keep(path, x):
        names = [getattr(k, "key", str(k)) for k in path]
        return x.ndim > 1 and not any(n in _NO_DECAY_NAMES for n in names)

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, Callable]:
    """The recipe's optimiser.

    - ``optimizer="sgd"``: SGD (Nesterov) momentum with weight decay added to the gradient
      (coupled, as in Goyal et al. and torchvision).
    - ``optimizer="adamw"``: Adam with decoupled weight decay. ``weight_decay_scale="lr"``
      multiplies the decay by the learning rate (``optax.adamw``, DeiT/timm);
      ``"schedule"`` multiplies it by the schedule's multiplier ``lr(t) / peak_lr`` only,
      as big_vision does (``update = -(lr(t) * adam + wd * lr(t) / peak * w)``).

    ``grad_clip_norm > 0`` clips the global gradient norm first; ``adam_mu_dtype`` sets
    the dtype of Adam's first moment (big_vision keeps it in bfloat16).

    Args:
      config: a recipe config.
      steps_per_epoch: optimiser steps per epoch (for the schedule).

    Returns:
      ``(tx, schedule)``.
    """
    validate_config(config)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    parts = []
    if config.grad_clip_norm and config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
    wd = float(config.weight_decay)
    if config.optimizer == "sgd":
        if wd:
            parts.append(optax.add_decayed_weights(wd, weight_decay_mask))
        parts.append(
            optax.sgd(schedule, momentum=float(config.momentum), nesterov=bool(config.nesterov))
        )
        return optax.chain(*parts), schedule
    mu_dtype = config.get("adam_mu_dtype", "") or None
    adam = optax.scale_by_adam(
        b1=float(config.adam_b1),
        b2=float(config.adam_b2),
        eps=float(config.adam_eps),
        mu_dtype=jnp.dtype(mu_dtype) if mu_dtype else None,
    )
    if config.get("weight_decay_scale", "lr") == "schedule":
        peak = peak_learning_rate(config)
        parts += [adam, optax.scale(peak)]
        if wd:
            parts.append(optax.add_decayed_weights(wd, weight_decay_mask))
        parts += [optax.scale_by_schedule(lambda t: schedule(t) / peak), optax.scale(-1.0)]
    else:
        parts.append(adam)
        if wd:
            parts.append(optax.add_decayed_weights(wd, weight_decay_mask))
        parts.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*parts), schedule
