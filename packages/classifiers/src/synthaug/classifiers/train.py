"""Training and evaluation: the train state, optimiser, jitted steps and the ``fit`` loop.

Data parallelism is expressed with a ``jax.sharding.Mesh`` that has a ``"data"`` axis: the
state is replicated, the batch is sharded along its first axis, and the step is one jitted
(GSPMD) program. BatchNorm's batch mean and variance are reductions over the *global*
batch array, so the statistics are those of the whole batch, not of each device's share.

Evaluation pads the last partial batch and carries a mask, so every example counts exactly
once whatever the batch size or device count.
"""

from __future__ import annotations

import collections
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.classifiers import augment
from synthaug.classifiers.checkpoint import Checkpointer
from synthaug.classifiers.models import get_model
from synthaug.classifiers.recipes import peak_learning_rate, validate_config

logger = logging.getLogger(__name__)

_NO_DECAY_NAMES = ("pos_embed", "cls_token", "dist_token")


@flax.struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (a plain pytree).

    Attributes:
      step: int32 scalar, the number of steps taken.
      params: the ``params`` collection.
      batch_stats: the ``batch_stats`` collection (empty dict for models without BN).
      opt_state: the optax state.
      rng: uint32[2] base key; step ``s`` uses ``fold_in(rng, s)``.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array


# --------------------------------------------------------------------------- model / optimiser
def model_from_config(config: ml_collections.ConfigDict) -> nn.Module:
    """``get_model(config.model, config.num_classes, **config.model_kwargs, dtype=...)``."""
    kwargs = dict(config.model_kwargs.to_dict()) if config.model_kwargs else {}
    if config.dtype != "float32":
        kwargs["dtype"] = jnp.dtype(config.dtype)
    return get_model(config.model, int(config.num_classes), **kwargs)


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


def schedule_hparams(config: ml_collections.ConfigDict, steps_per_epoch: int) -> dict:
    """The numbers of a recipe's learning-rate schedule, as float32 arrays.

    Together with the model and the rest of the recipe they key the cache of compiled train
    steps: fits with the same recipe and the same schedule numbers compile once.

    Args:
      config: a recipe config.
      steps_per_epoch: optimiser steps per epoch.

    Returns:
      ``{"peak", "warmup", "warmup_div", "decay_start", "decay_len", "min_lr",
      "boundaries"}``.
    """
    peak = peak_learning_rate(config)
    warmup = int(round(float(config.warmup_epochs) * steps_per_epoch))
    total = total_steps(config, steps_per_epoch)
    f32 = np.float32
    return {
        "peak": f32(peak),
        "warmup": f32(warmup),
        "warmup_div": f32(max(warmup, 1)),
        "decay_len": f32(max(total - warmup, 1)),
        "min_lr": f32(float(config.min_lr)),
        "boundaries": np.asarray(
            [int(b * steps_per_epoch) for b in config.step_boundaries], np.float32
        ),
    }


def _schedule_fn(kind: str, hp: dict) -> Callable[[jax.Array], jax.Array]:
    """``schedule(step)`` from :func:`schedule_hparams` (concrete or traced values)."""

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        peak = hp["peak"]
        warm = peak * step / hp["warmup_div"]
        if kind == "cosine":
            progress = jnp.clip((step - hp["warmup"]) / hp["decay_len"], 0.0, 1.0)
            min_lr = hp["min_lr"]
            after = min_lr + (peak - min_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        elif kind == "step":
            after = peak * 0.1 ** jnp.sum(step >= hp["boundaries"])
        else:
            after = jnp.asarray(peak, jnp.float32)
        return jnp.where(step < hp["warmup"], warm, after)

    return schedule


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> Callable[[jax.Array], jax.Array]:
    """Linear warmup from 0 to the peak lr, then cosine / step / constant.

    Args:
      config: a recipe config (``base_lr``, ``lr_batch_base``, ``batch_size``,
        ``warmup_epochs``, ``schedule``, ``min_lr``, ``step_boundaries``).
      steps_per_epoch: optimiser steps per epoch.

    Returns:
      ``schedule(step) -> lr``.
    """
    hp = {k: jnp.asarray(v) for k, v in schedule_hparams(config, steps_per_epoch).items()}
    return _schedule_fn(config.schedule, hp)


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
    """The recipe's optimiser: SGD + Nesterov with coupled weight decay, or AdamW.

    Args:
      config: a recipe config.
      steps_per_epoch: optimiser steps per epoch (for the schedule).

    Returns:
      ``(tx, schedule)``.
    """
    validate_config(config)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    return _optimizer(config, schedule), schedule


def _optimizer(
    config: ml_collections.ConfigDict, schedule: Callable
) -> optax.GradientTransformation:
    parts = []
    if config.grad_clip_norm and config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
    if config.optimizer == "sgd":
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(float(config.weight_decay), weight_decay_mask))
        parts.append(
            optax.sgd(schedule, momentum=float(config.momentum), nesterov=bool(config.nesterov))
        )
    else:
        parts.append(
            optax.adamw(
                schedule,
                b1=float(config.adam_b1),
                b2=float(config.adam_b2),
                eps=float(config.adam_eps),
                weight_decay=float(config.weight_decay),
                mask=weight_decay_mask,
            )
        )
    return optax.chain(*parts)


# Recipe keys that do not change the compiled steps beyond the schedule's numbers (which key
# the train step separately, see `schedule_hparams`): the rest is loop bookkeeping.
_NOT_COMPILED = frozenset(
    {
        "train_examples",
        "epochs",
        "total_steps",
        "base_lr",
        "lr_batch_base",
        "warmup_epochs",
        "min_lr",
        "step_boundaries",
        "seed",
        "eval_batch_size",
        "checkpoint_every_steps",
        "checkpoint_max_to_keep",
        "eval_every_epochs",
        "log_every_steps",
    }
)
_STEP_CACHE: collections.OrderedDict = collections.OrderedDict()
_STEP_CACHE_SIZE = 32


def _compile_key(kind: str, model: nn.Module, config, mesh, *extra) -> tuple:
    """What a compiled step depends on: the model, the recipe (less `_NOT_COMPILED`), mesh."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in _NOT_COMPILED}
    cfg["num_step_boundaries"] = len(config.step_boundaries)
    return (
        kind,
        type(model).__name__,
        repr(model),
        json.dumps(cfg, sort_keys=True, default=str),
        mesh,
        *extra,
    )


def _hp_key(hp: dict) -> tuple:
    return tuple((k, np.asarray(v).tobytes()) for k, v in sorted(hp.items()))


def _cached(key: tuple, build: Callable[[], Callable]) -> Callable:
    """One jitted function per key, so that repeated fits compile their steps once."""
    fn = _STEP_CACHE.get(key)
    if fn is None:
        fn = build()
        _STEP_CACHE[key] = fn
        while len(_STEP_CACHE) > _STEP_CACHE_SIZE:
            _STEP_CACHE.popitem(last=False)
    else:
        _STEP_CACHE.move_to_end(key)
    return fn


def _copy(config) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(config.to_dict())


def clear_step_cache() -> None:
    """Forget the compiled train / eval / feature steps kept for reuse."""
    _STEP_CACHE.clear()


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
      mesh: if given, the state is placed replicated on it.

    Returns:
      a :class:`TrainState` at step 0.
    """
    spe = steps_per_epoch or steps_per_epoch_of(config)
    k_init, k_run = jax.random.split(rng)
    init = _cached(
        _compile_key("init", model, config, None, _hp_key(schedule_hparams(config, spe))),
        lambda: _build_init(model, _copy(config), spe),
    )
    state = init(k_init, k_run)
    if mesh is not None:
        state = jax.device_put(state, NamedSharding(mesh, P()))
    return state


def _build_init(model, config, spe):
    tx, _ = make_optimizer(config, spe)
    size = int(config.image_size)

    @jax.jit
    def init(k_init, k_run):
        x = jnp.zeros((1, size, size, 3), jnp.float32)
        variables = model.init({"params": k_init, "dropout": k_init}, x, train=False)
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=batch_stats,
            opt_state=tx.init(params),
            rng=jax.random.key_data(k_run) if _is_typed_key(k_run) else k_run,
        )

    return init


def _is_typed_key(k) -> bool:
    return jnp.issubdtype(k.dtype, jax.dtypes.prng_key)


# --------------------------------------------------------------------------- preprocessing
def prepare_images(
    images: jax.Array,
    config: ml_collections.ConfigDict,
    *,
    key: jax.Array | None = None,
    train: bool = False,
) -> jax.Array:
    """uint8 ``[B, H, W, 3]`` images -> normalised float32 model input.

    Resizes (bilinear, antialiased) to ``config.image_size`` when the side differs. With
    ``train=True`` applies, in order: RandAugment (``config.randaugment.num_layers > 0``),
    pad-crop / flip (``config.augment``), normalisation, random erasing. Float inputs are
    taken as already normalised (no RandAugment).

    Args:
      images: uint8 or float ``[B, H, W, 3]``.
      config: a recipe config.
      key: PRNG key (required for ``train=True``).
      train: apply the training augmentation.

    Returns:
      float32 ``[B, image_size, image_size, 3]``.
    """
    chex.assert_rank(images, 4)
    if images.shape[-1] != 3:
        raise ValueError(f"images must be RGB [B, H, W, 3], got shape {images.shape}")
    is_uint8 = images.dtype == jnp.uint8
    x = images.astype(jnp.float32)
    size = int(config.image_size)
    if x.shape[1] != size or x.shape[2] != size:
        x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear", antialias=True)
    if train:
        if key is None:
            raise ValueError("prepare_images(train=True) needs a PRNG key")
        k_ra, k_crop, k_flip, k_erase = jax.random.split(key, 4)
        ra = config.randaugment
        if ra.num_layers > 0:
            if not is_uint8:
                raise ValueError("RandAugment needs uint8 images in [0, 255]")
            x = augment.rand_augment(
                k_ra,
                x,
                num_layers=int(ra.num_layers),
                magnitude=float(ra.magnitude),
                magnitude_std=float(ra.magnitude_std),
            )
        if config.augment in ("pad_crop", "pad_crop_flip"):
            x = augment.random_pad_crop(k_crop, x, pad=max(size // 8, 1))
        if config.augment in ("flip", "pad_crop_flip"):
            x = augment.random_flip(k_flip, x)
    if is_uint8:
        mean = jnp.asarray(config.mean, jnp.float32) * 255.0
        std = jnp.asarray(config.std, jnp.float32) * 255.0
        x = (x - mean) / std
    if train and config.random_erase_prob > 0:
        x = augment.random_erasing(k_erase, x, prob=float(config.random_erase_prob))
    return x


def _variables(state_or_vars) -> dict:
    if isinstance(state_or_vars, TrainState):
        v = {"params": state_or_vars.params}
        if state_or_vars.batch_stats:
            v["batch_stats"] = state_or_vars.batch_stats
        return v
    return dict(state_or_vars)


# --------------------------------------------------------------------------- steps
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
    With ``mesh``, the state is replicated and the batch sharded over the ``"data"`` axis;
    BatchNorm statistics are then computed over the global batch.

    Args:
      model: a module from :func:`get_model`.
      config: a recipe config.
      mesh: optional mesh with a ``"data"`` axis.
      steps_per_epoch: for the lr schedule (default ``train_examples // batch_size``).
      donate: donate the input state's buffers.

    Returns:
      the jitted step; metrics are ``loss``, ``top1`` (against the unmixed labels), ``lr``.
    """
    spe = steps_per_epoch or steps_per_epoch_of(config)
    validate_config(config)
    hp = schedule_hparams(config, spe)
    return _cached(
        _compile_key("train", model, config, mesh, bool(donate), _hp_key(hp)),
        lambda: _build_train_step(model, _copy(config), mesh, donate, hp),
    )


def _build_train_step(model, config, mesh, donate, hp):
    num_classes = int(config.num_classes)
    smoothing = float(config.label_smoothing)
    schedule = _schedule_fn(config.schedule, hp)
    tx = _optimizer(config, schedule)

    def train_step(state: TrainState, batch: dict):
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
            x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P("data")))
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
            loss = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
            return loss, (logits, new_stats)

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "top1": jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32)),
            "lr": schedule(state.step),
        }
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state
        )
        return new_state, metrics

    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return jax.jit(train_step, donate_argnums=donate_argnums)
    _check_mesh(mesh)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(
        train_step,
        in_shardings=(repl, data),
        out_shardings=(repl, repl),
        donate_argnums=donate_argnums,
    )


def make_eval_step(
    model: nn.Module, config: ml_collections.ConfigDict, mesh: Mesh | None = None
) -> Callable[[Any, dict], dict]:
    """A jitted ``eval_step(state, batch) -> sums``.

    ``batch`` is ``{"images", "labels", "mask"}`` where ``mask`` (bool/float ``[B]``) marks
    real examples (padding is 0). Returns sums over the real examples: ``correct1``,
    ``correct5`` (int32), ``loss`` (float32, cross-entropy) and ``count`` (int32). Top-5 is
    top-min(5, num_classes).

    Args:
      model: a module from :func:`get_model`.
      config: a recipe config (preprocessing).
      mesh: optional mesh; the batch is sharded over ``"data"``.

    Returns:
      the jitted step; ``state`` is a :class:`TrainState` or a variables dict.
    """
    return _cached(
        _compile_key("eval", model, config, mesh),
        lambda: _build_eval_step(model, _copy(config), mesh),
    )


def _build_eval_step(model, config, mesh):
    k = min(5, int(config.num_classes))

    def eval_step(state, batch):
        images, labels, mask = batch["images"], batch["labels"], batch["mask"]
        chex.assert_rank(images, 4)
        chex.assert_rank([labels, mask], 1)
        x = prepare_images(images, config, train=False)
        logits = model.apply(_variables(state), x, train=False).astype(jnp.float32)
        m = mask.astype(jnp.int32)
        c1 = jnp.argmax(logits, -1) == labels
        _, topk = jax.lax.top_k(logits, k)
        c5 = jnp.any(topk == labels[:, None], axis=-1)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {
            "correct1": jnp.sum(c1.astype(jnp.int32) * m),
            "correct5": jnp.sum(c5.astype(jnp.int32) * m),
            "loss": jnp.sum(jnp.where(m > 0, loss, 0.0)),
            "count": jnp.sum(m),
        }

    if mesh is None:
        return jax.jit(eval_step)
    _check_mesh(mesh)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(eval_step, in_shardings=(repl, data), out_shardings=repl)


def make_feature_fn(
    model: nn.Module, config: ml_collections.ConfigDict, mesh: Mesh | None = None
) -> Callable[[Any, jax.Array], jax.Array]:
    """A jitted ``features(state, images) -> [B, D]`` (penultimate-layer features)."""
    return _cached(
        _compile_key("features", model, config, mesh),
        lambda: _build_feature_fn(model, _copy(config), mesh),
    )


def _build_feature_fn(model, config, mesh):
    def features(state, images):
        x = prepare_images(images, config, train=False)
        return model.apply(_variables(state), x, train=False, return_features=True)

    if mesh is None:
        return jax.jit(features)
    _check_mesh(mesh)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(features, in_shardings=(repl, data), out_shardings=data)


def _check_mesh(mesh: Mesh) -> None:
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have a 'data' axis, got axes {mesh.axis_names}")


def _data_size(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(mesh.shape["data"])


def shard_batch(batch: dict, mesh: Mesh | None) -> dict:
    """Place a host batch on the mesh, split along the first axis over ``"data"``.

    Args:
      batch: dict of numpy arrays with a common leading batch axis.
      mesh: mesh with a ``"data"`` axis, or None (returned as device arrays).

    Returns:
      dict of (sharded) jax arrays.
    """
    if mesh is None:
        return jax.tree_util.tree_map(jnp.asarray, batch)
    n = _data_size(mesh)
    sharding = NamedSharding(mesh, P("data"))
    out = {}
    for name, value in batch.items():
        if value.shape[0] % n:
            raise ValueError(
                f"batch[{name!r}] has {value.shape[0]} examples, not a multiple of the "
                f"{n} devices on the mesh's 'data' axis"
            )
        out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return out


# --------------------------------------------------------------------------- high level
def _check_images(images, labels, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}_images must be [N, H, W, 3], got shape {images.shape}")
    if labels is None:
        return images, None
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name}_labels must be [N] with N = {images.shape[0]}, got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}_labels must be integers, got dtype {labels.dtype}")
    return images, labels.astype(np.int32)


def _padded_batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        mask = idx < n
        yield np.where(mask, idx, 0), mask


def _eval_batch_size(config, batch_size, mesh) -> int:
    bs = int(batch_size or config.eval_batch_size)
    d = _data_size(mesh)
    return max(d, (bs // d) * d)


def _sum_eval(eval_step, state, batches, mesh) -> dict:
    """Exact top-1/top-5/loss over masked batches (dicts with images, labels, mask)."""
    c1 = c5 = count = 0
    loss = 0.0
    for batch in batches:
        sums = jax.device_get(eval_step(state, shard_batch(batch, mesh)))
        c1 += int(sums["correct1"])
        c5 += int(sums["correct5"])
        count += int(sums["count"])
        loss += float(sums["loss"])
    return {
        "top1": c1 / max(count, 1),
        "top5": c5 / max(count, 1),
        "loss": loss / max(count, 1),
        "count": count,
    }


def _run_eval(eval_step, state, images, labels, batch_size, mesh) -> dict:
    batches = (
        {"images": images[idx], "labels": labels[idx], "mask": mask}
        for idx, mask in _padded_batches(images.shape[0], batch_size)
    )
    return _sum_eval(eval_step, state, batches, mesh)


def evaluate(
    config: ml_collections.ConfigDict,
    state: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> dict:
    """Top-1, top-5 and mean cross-entropy over a whole eval set, every example once.

    The last partial batch is padded and masked, so the result does not depend on the
    batch size or the number of devices.

    Args:
      config: the recipe config the model was trained with.
      state: a :class:`TrainState` (or ``{"params", "batch_stats"}``).
      images: uint8 ``[N, H, W, 3]``.
      labels: int ``[N]``.
      batch_size: default ``config.eval_batch_size`` (rounded to the device count).
      mesh: optional mesh with a ``"data"`` axis.

    Returns:
      ``{"top1", "top5", "loss", "count"}``.
    """
    images, labels = _check_images(images, labels, "eval")
    model = model_from_config(config)
    step = make_eval_step(model, config, mesh)
    return _run_eval(step, state, images, labels, _eval_batch_size(config, batch_size, mesh), mesh)


def predict_features(
    config: ml_collections.ConfigDict,
    state: Any,
    images: np.ndarray,
    *,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Penultimate-layer features (ResNet: pooled; ViT: final-norm class token).

    Args:
      config: the recipe config the model was trained with.
      state: a :class:`TrainState` (or ``{"params", "batch_stats"}``).
      images: uint8 ``[N, H, W, 3]``.
      batch_size: default ``config.eval_batch_size``.
      mesh: optional mesh with a ``"data"`` axis.

    Returns:
      float32 ``[N, D]`` numpy array.
    """
    images, _ = _check_images(images, None, "feature")
    model = model_from_config(config)
    fn = make_feature_fn(model, config, mesh)
    bs = _eval_batch_size(config, batch_size, mesh)
    out = []
    for idx, mask in _padded_batches(images.shape[0], bs):
        feats = jax.device_get(fn(state, shard_batch({"images": images[idx]}, mesh)["images"]))
        out.append(np.asarray(feats, np.float32)[mask])
    return np.concatenate(out, axis=0)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of one epoch (a function of seed and epoch only)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def fit(
    config: ml_collections.ConfigDict,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    *,
    rng: jax.Array,
    eval_images: np.ndarray | None = None,
    eval_labels: np.ndarray | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    log_fn: Callable[[dict], None] | None = None,
    step_fn: Callable[[int, dict], None] | None = None,
) -> tuple[TrainState, list[dict]]:
    """Train a classifier on in-memory images; resumes from ``checkpoint_dir`` if present.

    Each epoch visits a fresh permutation of the data (a function of the key and epoch),
    dropping the last partial batch; step ``s`` draws its randomness from
    ``fold_in(state.rng, s)``. A run killed and resumed from its last checkpoint therefore
    ends with bit-identical parameters.

    Args:
      config: a recipe config (``demo_recipe()`` for 32x32 data); ``train_examples`` is
        filled in from the data.
      train_images: uint8 ``[N, H, W, 3]``.
      train_labels: int ``[N]`` in ``[0, num_classes)``.
      rng: PRNG key.
      eval_images, eval_labels: optional eval set, evaluated every
        ``config.eval_every_epochs`` epochs and at the end.
      checkpoint_dir: save every ``config.checkpoint_every_steps`` steps and at the end;
        resume from the latest checkpoint found there.
      mesh: optional mesh with a ``"data"`` axis (data parallelism).
      log_fn: called with each epoch's record.
      step_fn: called as ``step_fn(step, metrics)`` after every step (progress display).

    Returns:
      ``(state, history)``; history holds one dict per epoch (``epoch``, ``step``,
      ``train_loss``, ``train_top1``, ``lr`` and, with an eval set, ``eval_top1``,
      ``eval_top5``, ``eval_loss``).
    """
    images, labels = _check_images(train_images, train_labels, "train")
    if (eval_images is None) != (eval_labels is None):
        raise ValueError("eval_images and eval_labels must be given together")
    if eval_images is not None:
        eval_images, eval_labels = _check_images(eval_images, eval_labels, "eval")
    nc = int(config.num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= nc):
        raise ValueError(
            f"train_labels must be in [0, {nc}), got range [{labels.min()}, {labels.max()}]"
        )
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
    config.train_examples = int(images.shape[0])
    if images.shape[0] < config.batch_size:
        raise ValueError(
            f"train_images has {images.shape[0]} examples, fewer than one batch "
            f"(config.batch_size={config.batch_size})"
        )
    if config.batch_size % _data_size(mesh):
        raise ValueError(
            f"config.batch_size ({config.batch_size}) must be a multiple of the "
            f"{_data_size(mesh)} devices on the mesh"
        )
    model = model_from_config(config)
    spe = steps_per_epoch_of(config)
    k_init, k_data = jax.random.split(rng)
    data_seed = int(jax.random.randint(k_data, (), 0, 2**31 - 1))
    bs = int(config.batch_size)
    cache = {"epoch": -1, "perm": None}

    def next_batch(epoch: int, i: int) -> dict:
        if cache["epoch"] != epoch:
            cache["perm"] = epoch_permutation(data_seed, epoch, images.shape[0])
            cache["epoch"] = epoch
        idx = cache["perm"][i * bs : (i + 1) * bs]
        return {"images": images[idx], "labels": labels[idx]}

    run_eval = None
    if eval_images is not None:

        def run_eval(eval_step, state, eval_bs):
            return _run_eval(eval_step, state, eval_images, eval_labels, eval_bs, mesh)

    return _train_loop(
        config,
        model,
        spe,
        k_init,
        next_batch,
        run_eval,
        checkpoint_dir=checkpoint_dir,
        mesh=mesh,
        log_fn=log_fn,
        step_fn=step_fn,
    )


def _train_loop(
    config, model, spe, k_init, next_batch, run_eval, *, checkpoint_dir, mesh, log_fn, step_fn
):
    """The loop shared by :func:`fit` and :func:`fit_stream`.

    ``next_batch(epoch, i)`` gives the ``i``-th batch of ``epoch`` (called in order, except
    that a resumed run starts at its checkpoint's step); ``run_eval(eval_step, state,
    eval_batch_size)`` evaluates, or is None.
    """
    n_steps = total_steps(config, spe)
    state = create_train_state(model, config, k_init, steps_per_epoch=spe, mesh=mesh)
    history: list[dict] = []
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Checkpointer(checkpoint_dir, max_to_keep=int(config.checkpoint_max_to_keep))
        if ckpt.latest_step() is not None:
            state, meta = ckpt.restore(state)
            history = list(meta.get("history", []))
            logger.info("resumed from %s at step %d", checkpoint_dir, int(state.step))
    train_step = make_train_step(model, config, mesh, steps_per_epoch=spe, donate=True)
    eval_step = make_eval_step(model, config, mesh) if run_eval is not None else None
    eval_bs = _eval_batch_size(config, None, mesh)
    every = int(config.checkpoint_every_steps)
    eval_every = max(int(config.eval_every_epochs), 1)

    step = int(state.step)
    sums = {"loss": 0.0, "top1": 0.0, "n": 0, "lr": 0.0}
    try:
        while step < n_steps:
            epoch, i = divmod(step, spe)
            batch = shard_batch(next_batch(epoch, i), mesh)
            state, metrics = train_step(state, batch)
            step += 1
            m = jax.device_get(metrics)
            sums["loss"] += float(m["loss"])
            sums["top1"] += float(m["top1"])
            sums["lr"] = float(m["lr"])
            sums["n"] += 1
            if step_fn is not None:
                step_fn(step, {k: float(v) for k, v in m.items()})
            end_of_epoch = step % spe == 0 or step == n_steps
            if end_of_epoch:
                record = {
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": sums["loss"] / sums["n"],
                    "train_top1": sums["top1"] / sums["n"],
                    "lr": sums["lr"],
                }
                sums = {"loss": 0.0, "top1": 0.0, "n": 0, "lr": 0.0}
                if eval_step is not None and ((epoch + 1) % eval_every == 0 or step == n_steps):
                    ev = run_eval(eval_step, state, eval_bs)
                    record.update({f"eval_{k}": v for k, v in ev.items()})
                history.append(record)
                logger.info("epoch %s", record)
                if log_fn is not None:
                    log_fn(record)
            if ckpt is not None and (step % every == 0 or step == n_steps):
                # A checkpoint taken mid-epoch must not double-count the partial epoch's
                # metrics on resume: they restart from the next epoch boundary.
                ckpt.save(step, state, {"history": history})
    finally:
        if ckpt is not None:
            ckpt.close()
    return state, history


def _check_batch(batch: dict, batch_size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or "images" not in batch or "labels" not in batch:
        raise ValueError(f"{what}: each batch must be a dict with 'images' and 'labels'")
    images, labels = _check_images(batch["images"], batch["labels"], "batch")
    if images.shape[0] > batch_size:
        raise ValueError(
            f"{what}: a batch holds {images.shape[0]} examples, more than the batch size "
            f"{batch_size}"
        )
    return images, labels


def fit_stream(
    config: ml_collections.ConfigDict,
    epoch_batches: Callable[[int], Any],
    *,
    steps_per_epoch: int,
    rng: jax.Array,
    eval_batches: Callable[[], Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    log_fn: Callable[[dict], None] | None = None,
    step_fn: Callable[[int, dict], None] | None = None,
    batch_at: Callable[[int], Any] | None = None,
) -> tuple[TrainState, list[dict]]:
    """Train a classifier on streamed batches (e.g. a tf.data pipeline); resumable.

    Epoch ``e`` trains on the first ``steps_per_epoch`` full batches of
    ``epoch_batches(e)`` (a partial batch is skipped, so every step has the same shapes and
    the step compiles once). A run resumed from ``checkpoint_dir`` mid-epoch re-creates that
    epoch's iterator and skips the batches already taken, so an ``epoch_batches`` that is a
    function of the epoch (a seeded shuffle per epoch) continues exactly where it stopped.

    Args:
      config: a recipe config; ``train_examples`` is set to
        ``steps_per_epoch * batch_size`` (the learning-rate schedule follows it).
      epoch_batches: ``epoch -> iterable of {"images": uint8 [B, H, W, 3], "labels": [B]}``
        with ``B = config.batch_size`` (this host's share with several hosts).
      steps_per_epoch: optimiser steps per epoch.
      rng: PRNG key.
      eval_batches: ``() -> iterable`` of eval batches (any size up to the eval batch size;
        every example counts once), evaluated every ``config.eval_every_epochs`` and at the
        end.
      checkpoint_dir: save every ``config.checkpoint_every_steps`` steps and at the end;
        resume from the latest checkpoint found there.
      mesh: optional mesh with a ``"data"`` axis.
      log_fn, step_fn: as for :func:`fit`.
      batch_at: ``step -> batch`` for global step ``epoch * steps_per_epoch + i``, used
        instead of ``epoch_batches`` (which may then be None): an input that can be
        positioned at any step (e.g. from a saved iterator state), so that a resumed run
        does not read the batches before its checkpoint again.

    Returns:
      ``(state, history)`` as for :func:`fit`.

    Raises:
      ValueError: an epoch's iterator ends before ``steps_per_epoch`` full batches, or a
        batch is malformed.
    """
    spe = int(steps_per_epoch)
    if spe < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    config = ml_collections.ConfigDict(config.to_dict())
    bs = int(config.batch_size)
    config.train_examples = spe * bs
    if bs % _data_size(mesh):
        raise ValueError(
            f"config.batch_size ({bs}) must be a multiple of the {_data_size(mesh)} devices"
        )
    nc = int(config.num_classes)
    model = model_from_config(config)
    k_init, _ = jax.random.split(rng)
    it = {"epoch": -1, "iter": None, "next": 0}

    def full_batches(epoch: int):
        for b in epoch_batches(epoch):
            images, labels = _check_batch(b, bs, "epoch_batches")
            if images.shape[0] < bs:
                continue
            if labels.min() < 0 or labels.max() >= nc:
                raise ValueError(
                    f"epoch_batches: labels must be in [0, {nc}), got range "
                    f"[{labels.min()}, {labels.max()}]"
                )
            yield {"images": images, "labels": labels}

    def next_batch(epoch: int, i: int) -> dict:
        if batch_at is not None:
            images, labels = _check_batch(batch_at(epoch * spe + i), bs, "batch_at")
            if images.shape[0] != bs:
                raise ValueError(f"batch_at: a batch holds {images.shape[0]} examples, not {bs}")
            if labels.min() < 0 or labels.max() >= nc:
                raise ValueError(f"batch_at: labels must be in [0, {nc}), got {labels}")
            return {"images": images, "labels": labels}
        if it["epoch"] != epoch or it["next"] > i:
            it.update(epoch=epoch, iter=iter(full_batches(epoch)), next=0)
        while True:
            try:
                batch = next(it["iter"])
            except StopIteration:
                raise ValueError(
                    f"epoch_batches({epoch}) ended after {it['next']} full batches of "
                    f"{bs}; steps_per_epoch is {spe}"
                ) from None
            it["next"] += 1
            if it["next"] > i:
                return batch

    run_eval = None
    if eval_batches is not None:

        def run_eval(eval_step, state, eval_bs):
            def padded():
                for b in eval_batches():
                    images, labels = _check_images(b["images"], b["labels"], "eval")
                    for start in range(0, images.shape[0], eval_bs):
                        x, y = images[start : start + eval_bs], labels[start : start + eval_bs]
                        n = x.shape[0]
                        pad = eval_bs - n
                        yield {
                            "images": np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]),
                            "labels": np.concatenate([y, np.zeros((pad,), y.dtype)]),
                            "mask": np.arange(eval_bs) < n,
                        }

            return _sum_eval(eval_step, state, padded(), mesh)

    return _train_loop(
        config,
        model,
        spe,
        k_init,
        next_batch,
        run_eval,
        checkpoint_dir=checkpoint_dir,
        mesh=mesh,
        log_fn=log_fn,
        step_fn=step_fn,
    )


def num_steps(config: ml_collections.ConfigDict, n_examples: int) -> int:
    """Optimiser steps ``fit`` takes for ``n_examples`` training images."""
    return total_steps(config, max(n_examples // int(config.batch_size), 1))


__all__ = [
    "TrainState",
    "clear_step_cache",
    "create_train_state",
    "epoch_permutation",
    "evaluate",
    "fit",
    "fit_stream",
    "learning_rate_schedule",
    "make_eval_step",
    "make_feature_fn",
    "make_optimizer",
    "make_train_step",
    "model_from_config",
    "num_steps",
    "predict_features",
    "prepare_images",
    "schedule_hparams",
    "shard_batch",
    "weight_decay_mask",
]
