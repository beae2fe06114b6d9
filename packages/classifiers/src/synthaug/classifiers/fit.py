"""The training loops: ``fit`` (in-memory arrays) and ``fit_stream`` (streamed batches).

One loop serves both, in the pattern of flax's ``examples/imagenet``: steps are dispatched
without waiting for the device, their metrics stay on the device, and they are fetched
(one transfer) on log steps, at the end of an epoch and before a checkpoint. Every fetch
checks that the loss, gradients and update of each step since the last one were finite;
a non-finite step raises :class:`NonFiniteLossError` before anything is saved, so the
checkpoint directory keeps the last good states.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from synthaug.classifiers import parallel
from synthaug.classifiers.evaluate import (
    check_images,
    check_label_range,
    eval_batch_size,
    local_chunks,
    sum_eval,
    template_of,
)
from synthaug.classifiers.optim import steps_per_epoch_of, total_steps
from synthaug.classifiers.state import TrainState, create_train_state, model_from_config
from synthaug.classifiers.steps import make_eval_step, make_train_step
from synthaug.io.checkpoint import Checkpointer

__all__ = ["NonFiniteLossError", "epoch_permutation", "fit", "fit_stream"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A training step's loss, gradient or update was NaN or infinite.

    Attributes:
      step: the (0-based) step whose loss or update was not finite.
      last_saved: the newest checkpoint step left in the checkpoint directory, or None.
    """

    def __init__(self, step: int, metrics: dict, last_saved: int | None):
        where = (
            f"the checkpoints keep step {last_saved}"
            if last_saved is not None
            else "no checkpoint was written"
        )
        super().__init__(
            f"classifier training diverged at step {step}: loss={float(metrics['loss'])}, "
            f"grad_norm={float(metrics['grad_norm'])}, lr={float(metrics['lr']):.4g} (the "
            f"loss, gradients or update are not finite); {where}. Lower the learning rate "
            "(config.base_lr) or clip gradients (config.grad_clip_norm)"
        )
        self.step = step
        self.last_saved = last_saved


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of one epoch (a function of seed and epoch only)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def _check_common(config, mesh) -> None:
    n = parallel.data_size(mesh)
    if int(config.batch_size) % n:
        raise ValueError(
            f"config.batch_size ({config.batch_size}) must be a multiple of the {n} devices "
            "on the mesh"
        )


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
    ends with bit-identical parameters, and a run on a mesh equals the run on one device.

    With a mesh across several processes, every process passes the same arrays (the
    whole data set) and contributes the rows of each global batch that live on its
    devices; the eval set is split between the processes and counted once.

    Args:
      config: a recipe config (``demo_recipe()`` for 32x32 data); ``train_examples`` is
        filled in from the data.
      train_images: uint8 ``[N, H, W, 3]``.
      train_labels: int ``[N]`` in ``[0, num_classes)``.
      rng: PRNG key (the same on every process).
      eval_images, eval_labels: optional eval set, evaluated every
        ``config.eval_every_epochs`` epochs and at the end.
      checkpoint_dir: save every ``config.checkpoint_every_steps`` steps and at the end;
        resume from the latest checkpoint found there.
      mesh: optional mesh (data parallelism over all of its devices).
      log_fn: called with each epoch's record.
      step_fn: called as ``step_fn(step, metrics)`` after every step is dispatched; the
        metrics are device scalars (reading them waits for the step).

    Returns:
      ``(state, history)``; history holds one dict per epoch (``epoch``, ``step``,
      ``train_loss``, ``train_top1``, ``lr`` and, with an eval set, ``eval_top1``,
      ``eval_top5``, ``eval_loss``, ``eval_count``).

    Raises:
      ValueError: malformed data, labels outside ``[0, num_classes)``, fewer examples
        than one batch.
      NonFiniteLossError: a step's loss or update was not finite (checkpoints keep the
        last good step).
    """
    images, labels = check_images(train_images, train_labels, "train")
    if (eval_images is None) != (eval_labels is None):
        raise ValueError("eval_images and eval_labels must be given together")
    if eval_images is not None:
        eval_images, eval_labels = check_images(eval_images, eval_labels, "eval")
        check_label_range(eval_labels, int(config.num_classes), "eval_labels")
    check_label_range(labels, int(config.num_classes), "train_labels")
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
    config.train_examples = int(images.shape[0])
    if images.shape[0] < config.batch_size:
        raise ValueError(
            f"train_images has {images.shape[0]} examples, fewer than one batch "
            f"(config.batch_size={config.batch_size})"
        )
    _check_common(config, mesh)
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
        return _from_full({"images": images[idx], "labels": labels[idx]}, mesh)

    run_eval = None
    if eval_images is not None:
        part = np.array_split(np.arange(eval_images.shape[0]), jax.process_count())
        mine = part[jax.process_index()]
        ev_x, ev_y = eval_images[mine], eval_labels[mine]

        def run_eval(eval_step, state, eval_bs):
            lbs = parallel.local_batch_size(eval_bs, mesh)
            chunks = local_chunks([{"images": ev_x, "labels": ev_y}], lbs, "eval")
            return sum_eval(eval_step, state, chunks, eval_bs, mesh, template_of(config, ev_x))

    return _train_loop(
        config,
        model_from_config(config),
        spe,
        k_init,
        next_batch,
        run_eval,
        checkpoint_dir=checkpoint_dir,
        mesh=mesh,
        log_fn=log_fn,
        step_fn=step_fn,
    )


def _from_full(batch: dict, mesh: Mesh | None) -> dict:
    """A global batch from the whole batch held by every process (each reads its rows)."""
    if mesh is None:
        return parallel.global_batch(batch, None)
    sharding = parallel.batch_sharding(mesh)
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
        for k, v in batch.items()
    }


def fit_stream(
    config: ml_collections.ConfigDict,
    epoch_batches: Callable[[int], Iterable[dict]],
    *,
    steps_per_epoch: int,
    rng: jax.Array,
    eval_batches: Callable[[], Iterable[dict]] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
    log_fn: Callable[[dict], None] | None = None,
    step_fn: Callable[[int, dict], None] | None = None,
    batch_at: Callable[[int], dict] | None = None,
) -> tuple[TrainState, list[dict]]:
    """Train a classifier on streamed batches (e.g. a tf.data pipeline); resumable.

    Each process streams its own part of every global batch: ``local_batch_size(
    config.batch_size, mesh)`` examples (the whole batch with one process; half of it on
    each of two processes with equal devices), assembled into one global batch of
    ``config.batch_size``. Epoch ``e`` trains on the first ``steps_per_epoch`` full local
    batches of ``epoch_batches(e)`` (a smaller batch is skipped, so every step has the
    same shapes). A run resumed from ``checkpoint_dir`` mid-epoch re-creates that epoch's
    iterator and skips the batches already taken, so an ``epoch_batches`` that is a
    function of the epoch (a seeded shuffle per epoch) continues exactly where it stopped.

    Args:
      config: a recipe config; ``train_examples`` is set to
        ``steps_per_epoch * batch_size`` (the learning-rate schedule follows it).
      epoch_batches: ``epoch -> iterable of {"images": uint8 [b, H, W, 3], "labels": [b]}``
        with ``b`` this process's share of ``config.batch_size``.
      steps_per_epoch: optimiser steps per epoch.
      rng: PRNG key (the same on every process).
      eval_batches: ``() -> iterable`` of this process's eval batches (any size; every
        example of every process counts once), evaluated every ``config.eval_every_epochs``
        epochs and at the end.
      checkpoint_dir: save every ``config.checkpoint_every_steps`` steps and at the end;
        resume from the latest checkpoint found there.
      mesh: optional mesh.
      log_fn, step_fn: as for :func:`fit`.
      batch_at: ``step -> batch`` (this process's share) for global step
        ``epoch * steps_per_epoch + i``, used instead of ``epoch_batches``: an input that can
        be positioned at any step (e.g. from a saved iterator state), so that a resumed run
        does not read the batches before its checkpoint again.

    Returns:
      ``(state, history)`` as for :func:`fit`.

    Raises:
      ValueError: an epoch's iterator ends before ``steps_per_epoch`` full batches, or a
        batch is malformed or has labels outside ``[0, num_classes)``.
      NonFiniteLossError: as for :func:`fit`.
    """
    spe = int(steps_per_epoch)
    if spe < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    config = ml_collections.ConfigDict(config.to_dict())
    gbs = int(config.batch_size)
    config.train_examples = spe * gbs
    _check_common(config, mesh)
    bs = parallel.local_batch_size(gbs, mesh)
    nc = int(config.num_classes)
    k_init, _ = jax.random.split(rng)
    it = {"epoch": -1, "iter": None, "next": 0}

    def full_batches(epoch: int):
        for b in epoch_batches(epoch):
            if not isinstance(b, dict) or "images" not in b or "labels" not in b:
                raise ValueError(
                    "epoch_batches: each batch must be a dict with 'images' and 'labels'"
                )
            images, labels = check_images(b["images"], b["labels"], "batch")
            if images.shape[0] > bs:
                raise ValueError(
                    f"epoch_batches: a batch holds {images.shape[0]} examples, more than this "
                    f"process's share {bs} of config.batch_size={gbs}"
                )
            if images.shape[0] < bs:
                continue
            check_label_range(labels, nc, "epoch_batches: labels")
            yield {"images": images, "labels": labels}

    def next_batch(epoch: int, i: int) -> dict:
        if batch_at is not None:
            b = batch_at(epoch * spe + i)
            if not isinstance(b, dict) or "images" not in b or "labels" not in b:
                raise ValueError("batch_at: each batch must be a dict with 'images' and 'labels'")
            images, labels = check_images(b["images"], b["labels"], "batch")
            if images.shape[0] != bs:
                raise ValueError(f"batch_at: a batch holds {images.shape[0]} examples, not {bs}")
            check_label_range(labels, nc, "batch_at: labels")
            return parallel.global_batch({"images": images, "labels": labels}, mesh, gbs)
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
                return parallel.global_batch(batch, mesh, gbs)

    run_eval = None
    if eval_batches is not None:

        def run_eval(eval_step, state, eval_bs):
            lbs = parallel.local_batch_size(eval_bs, mesh)
            chunks = local_chunks(eval_batches(), lbs, "eval_batches")
            return sum_eval(eval_step, state, chunks, eval_bs, mesh, template_of(config))

    return _train_loop(
        config,
        model_from_config(config),
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

    ``next_batch(epoch, i)`` gives the ``i``-th global batch of ``epoch`` (called in
    order, except that a resumed run starts at its checkpoint's step); ``run_eval(
    eval_step, state, eval_batch_size)`` evaluates, or is None.
    """
    n_steps = total_steps(config, spe)
    state = create_train_state(model, config, k_init, steps_per_epoch=spe, mesh=mesh)
    history: list[dict] = []
    ckpt = None
    last_saved = None
    if checkpoint_dir is not None:
        ckpt = Checkpointer(checkpoint_dir, keep=int(config.checkpoint_max_to_keep))
        if ckpt.latest_step() is not None:
            state = ckpt.restore(target=state)
            last_saved = ckpt.restored_step
            history = list(ckpt.metadata().get("history", []))
            logger.info("resumed from %s at step %d", checkpoint_dir, last_saved)
    train_step = make_train_step(model, config, mesh, steps_per_epoch=spe, donate=True)
    eval_step = make_eval_step(model, config, mesh) if run_eval is not None else None
    eval_bs = eval_batch_size(config, None, mesh)
    every = max(int(config.checkpoint_every_steps), 1)
    log_every = max(int(config.log_every_steps), 1)
    eval_every = max(int(config.eval_every_epochs), 1)

    pending: list[tuple[int, dict]] = []  # (step, device metrics) not fetched yet
    sums = {"loss": 0.0, "top1": 0.0, "n": 0, "lr": 0.0}

    def fetch() -> None:
        """One transfer of the pending metrics; raise at the first non-finite step."""
        if not pending:
            return
        values = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, values, strict=True):
            if not bool(m["finite"]):
                raise NonFiniteLossError(s, m, last_saved)
            sums["loss"] += float(m["loss"])
            sums["top1"] += float(m["top1"])
            sums["lr"] = float(m["lr"])
            sums["n"] += 1
        logger.debug("step %d: loss %.4f", pending[-1][0] + 1, float(values[-1]["loss"]))
        pending.clear()

    step = int(state.step)
    try:
        while step < n_steps:
            epoch, i = divmod(step, spe)
            state, metrics = train_step(state, next_batch(epoch, i))
            pending.append((step, metrics))
            step += 1
            if step_fn is not None:
                step_fn(step, metrics)
            end_of_epoch = step % spe == 0 or step == n_steps
            save = ckpt is not None and (step % every == 0 or step == n_steps)
            if step % log_every == 0 or end_of_epoch or save:
                fetch()
            if end_of_epoch:
                record = {
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": sums["loss"] / max(sums["n"], 1),
                    "train_top1": sums["top1"] / max(sums["n"], 1),
                    "lr": sums["lr"],
                }
                sums.update(loss=0.0, top1=0.0, n=0, lr=0.0)
                if eval_step is not None and ((epoch + 1) % eval_every == 0 or step == n_steps):
                    ev = run_eval(eval_step, state, eval_bs)
                    record.update({f"eval_{k}": v for k, v in ev.items()})
                history.append(record)
                logger.info("epoch %s", record)
                if log_fn is not None:
                    log_fn(record)
            if save:
                # A checkpoint taken mid-epoch does not carry the partial epoch's running
                # metrics: after a resume they restart at the next epoch boundary.
                # Asynchronous: the arrays are copied to the host before the next step.
                ckpt.save(step, state, metadata={"history": history}, force=True)
                last_saved = step
        fetch()
    finally:
        if ckpt is not None:
            ckpt.close()
    return state, history
