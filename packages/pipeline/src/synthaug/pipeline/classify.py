"""``synthaug train-classifier``: a classifier on real, synthetic-only (CAS) or mixed data.

In-memory data (the digits; small synthetic sets) trains through
``synthaug.classifiers.fit``. ImageNet-scale data (``data.real.source`` an ImageNet source,
or ``data.stream = True``) streams through tf.data pipelines of ``synthaug.imagenet_data``
into ``synthaug.classifiers.fit_stream``: real images, synthetic shards, or both drawn at
the configured proportion (``data.synthetic_images`` synthetic per pass next to the real
set), with Inception crop-and-flip for training (synthetic images first resized to
256x256, as in the paper) and resize + center crop for the per-epoch evaluation. The
trained classifier is saved by ``synthaug.classifiers.save_classifier`` (its recipe in
``classifier.json`` next to its checkpoints), so that ``evaluate`` and the demo can reload it.
"""

from __future__ import annotations

import time
from typing import Any

import ml_collections
import numpy as np

from synthaug.pipeline.data import check_source, dataset_of, digits_subset
from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir
from synthaug.pipeline.writer import MetricWriter

__all__ = [
    "RECIPE_FILE",
    "check_classifier",
    "load_classifier",
    "read_synthetic_arrays",
    "recipe_config",
    "stream_datasets",
    "train_classifier",
]

RECIPE_FILE = "classifier.json"
MODES = ("real", "synthetic", "mixed")


def recipe_config(cfg) -> ml_collections.ConfigDict:
    """The ``synthaug.classifiers`` recipe of a train-classifier config: its ``recipe``
    section, as it is (checked by ``classifiers.validate_config``)."""
    from synthaug import classifiers as cl

    r = ml_collections.ConfigDict(cfg.recipe.to_dict())
    if r.model not in cl.MODEL_NAMES:
        raise ConfigError(
            f"unknown recipe.model {r.model!r}; expected one of {', '.join(cl.MODEL_NAMES)}"
        )
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if int(r[key]) < 1:
            raise ConfigError(f"recipe.{key} must be >= 1, got {r[key]}")
    if int(r.total_steps) < 0:
        raise ConfigError(f"recipe.total_steps must be >= 0 (0 = epochs), got {r.total_steps}")
    try:
        cl.validate_config(r)
    except ValueError as e:
        raise ConfigError(str(e).replace("config.", "recipe.", 1)) from None
    r.lock()
    return r


def read_synthetic_arrays(out_dir, *, limit: int = 0, size: int | None = None):
    """Images and labels of a synthetic set (every host directory), optionally resized.

    Args:
      out_dir: a ``sample`` output directory.
      limit: keep the first ``limit`` examples (0 = all).
      size: resize to ``size``×``size`` (bilinear) if the images differ.

    Returns:
      ``(uint8 [N, H, W, 3], int32 [N])``.
    """
    from synthaug import imagenet_data as data

    require_dir(out_dir, "synthetic data directory")
    images, labels = [], []
    for d in data.synthetic_dirs(out_dir):
        for img, lab in data.iter_synthetic(d):
            images.append(img)
            labels.append(lab)
            if limit and len(labels) >= limit:
                break
        if limit and len(labels) >= limit:
            break
    if not labels:
        raise ConfigError(f"synthetic data directory {str(out_dir)!r} holds no images")
    x = np.stack(images)
    if size is not None and x.shape[1] != size:
        import tensorflow as tf

        x = tf.cast(tf.round(tf.image.resize(x, (size, size))), tf.uint8).numpy()
    return x, np.asarray(labels, np.int32)


def check_classifier(cfg) -> None:
    """Every input of a train-classifier config exists (raises before anything is written)."""
    if not cfg.workdir:
        raise ConfigError("train-classifier needs config.workdir")
    if cfg.data.mode not in MODES:
        raise ConfigError(f"data.mode must be one of {', '.join(MODES)}, got {cfg.data.mode!r}")
    if cfg.data.mode in ("real", "mixed"):
        check_source(cfg.data.real)
    if cfg.data.mode in ("synthetic", "mixed"):
        require_dir(cfg.data.synthetic_dir, "synthetic data directory (data.synthetic_dir)")
    recipe_config(cfg)


def _train_arrays(cfg) -> tuple[np.ndarray, np.ndarray]:
    size = int(cfg.recipe.image_size)
    seed = int(cfg.recipe.seed)
    parts = []
    if cfg.data.mode in ("real", "mixed"):
        if dataset_of(cfg.data.real.source) != "digits":
            raise ConfigError(
                "in-memory training reads the digits; ImageNet-scale data streams through "
                "tf.data on the pod (data.real.source must be 'digits' here)"
            )
        parts.append(digits_subset(cfg.data.real.split, size, cfg.data.real.per_class, seed=seed))
    if cfg.data.mode in ("synthetic", "mixed"):
        parts.append(
            read_synthetic_arrays(
                cfg.data.synthetic_dir, limit=int(cfg.data.synthetic_images), size=size
            )
        )
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
    return images, labels


def _eval_arrays(cfg):
    if cfg.data.mode == "synthetic" and cfg.data.real.source != "digits":
        return None
    src = cfg.data.real
    if src.source != "digits":
        return None
    return digits_subset(cfg.data.eval_split, int(cfg.recipe.image_size))


def _streaming(cfg) -> bool:
    if cfg.data.get("stream", False):
        return True
    return dataset_of(cfg.data.real.source) != "digits"


def _count(ds) -> int:
    import tensorflow as tf

    n = int(tf.data.experimental.cardinality(ds))
    if n >= 0:
        return n
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


def _synthetic_dataset(cfg, *, shuffle: bool, seed: int):
    """``(dataset of (uint8 image, label), examples)`` of the synthetic shards."""
    from synthaug import imagenet_data as data

    root = cfg.data.synthetic_dir
    require_dir(root, "synthetic data directory (data.synthetic_dir)")
    total = sum(int(data.read_manifest(d)["num_examples"]) for d in data.synthetic_dirs(root))
    buffer = int(cfg.data.get("shuffle_buffer", data.DEFAULT_SHUFFLE_BUFFER))
    limit = int(cfg.data.synthetic_images)
    if limit:  # the first `limit` examples, shuffled among themselves
        ds, total = data.read_synthetic(root).take(limit), min(limit, total)
        if shuffle and buffer:
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        ds = data.read_synthetic(root, shuffle=shuffle, seed=seed, shuffle_buffer=buffer)
    if total == 0:
        raise ConfigError(f"synthetic data directory {cfg.data.synthetic_dir!r} holds no images")
    return ds, total


def stream_datasets(cfg, recipe):
    """The tf.data pipelines of a streaming train-classifier run.

    Args:
      cfg: a validated ``train-classifier`` config.
      recipe: its recipe config (:func:`recipe_config`).

    Returns:
      ``(epoch_batches, eval_batches, steps_per_epoch, composition)`` for
      ``synthaug.classifiers.fit_stream``; ``eval_batches`` is None when there is no real
      eval split; ``composition`` counts the real and synthetic examples per pass.
    """
    import tensorflow as tf

    from synthaug import imagenet_data as data
    from synthaug.pipeline.data import real_dataset
    from synthaug.tpu_launch import process_count, process_index

    size = int(recipe.image_size)
    bs = int(recipe.batch_size)
    pc, pi = process_count(), process_index()
    per_host = bs // max(pc, 1)
    mode = cfg.data.mode
    seed = int(recipe.seed)
    n_real = n_syn = 0
    if mode in ("real", "mixed"):
        n_real = _count(real_dataset(cfg.data.real))
    if mode in ("synthetic", "mixed"):
        n_syn = _synthetic_dataset(cfg, shuffle=False, seed=seed)[1]
    total = n_real + n_syn
    steps = total // bs
    if steps < 1:
        raise ConfigError(
            f"train.batch_size {bs} exceeds the {total} training images of data.mode {mode!r}"
        )

    square = int(round(size * 256 / 224))

    def _square_resize(image, label, *rest):
        image = tf.image.resize(image, (square, square), method="bilinear", antialias=True)
        return (tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label, *rest)

    def train_prep(i, example):
        image, label = example[0], example[1]
        crop_seed = tf.stack([tf.cast(i, tf.int32), tf.constant(seed, tf.int32)])
        image = data.inception_crop_flip(image, size=size, seed=crop_seed)
        return {"images": image, "labels": tf.cast(label, tf.int32)}

    def epoch_dataset(epoch: int):
        ep_seed = seed * 100_003 + epoch
        parts = []
        if n_real:
            parts.append(
                real_dataset(
                    cfg.data.real,
                    shuffle=True,
                    seed=ep_seed,
                    process_index=pi,
                    process_count=pc,
                )
            )
        if n_syn:
            syn, _ = _synthetic_dataset(cfg, shuffle=True, seed=ep_seed)
            syn = syn.shard(pc, pi) if pc > 1 else syn
            # As the paper: synthetic images resized to 256x256 (scaled with the model's
            # input side), then the same random crop and flip as the real ones.
            parts.append(syn.map(_square_resize, num_parallel_calls=tf.data.AUTOTUNE))
        if len(parts) == 2:
            # Each example is real or synthetic in the proportion of the two set sizes.
            ds, _ = data.mix(parts[0], parts[1], ratio=n_syn / total, seed=ep_seed)
        else:
            ds = parts[0].repeat()
        ds = ds.map(lambda *x: (x[0], x[1])).take(steps * per_host)
        ds = ds.enumerate().map(train_prep, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(per_host, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def epoch_batches(epoch: int):
        return epoch_dataset(epoch).as_numpy_iterator()

    epoch_batches.dataset = epoch_dataset  # the tf.data pipeline, for resumable streams

    eval_batches = None
    try:
        check_source(cfg.data.real)
        has_eval = True
    except (ConfigError, FileNotFoundError):
        has_eval = False  # synthetic-only training without a real data set at hand
    if has_eval:
        resize = max(size, int(round(size * 256 / 224)))

        def eval_prep(image, label):
            image = data.eval_resize_crop(image, resize_size=resize, crop_size=size)
            return {"images": image, "labels": tf.cast(label, tf.int32)}

        def eval_batches():
            ds = real_dataset(
                cfg.data.real, split=cfg.data.eval_split, process_index=pi, process_count=pc
            )
            ds = ds.map(eval_prep, num_parallel_calls=tf.data.AUTOTUNE)
            return ds.batch(int(recipe.eval_batch_size)).prefetch(2).as_numpy_iterator()

    return epoch_batches, eval_batches, steps, {"real": n_real, "synthetic": n_syn}


def _resumable_batches(recipe, epoch_dataset, steps_per_epoch: int, workdir):
    """``batch_at(step)`` over the epochs' pipelines, its iterator state saved with every
    model checkpoint so that a resumed run restores its input position (no replay)."""
    from synthaug.pipeline.resume import INPUT_STATE_DIR, CheckpointedStream
    from synthaug.tpu_launch import process_count, process_index

    pi, pc = process_index(), process_count()
    return CheckpointedStream(
        epoch_dataset,
        workdir / INPUT_STATE_DIR / f"process-{pi:05d}-of-{pc:05d}",
        save_every=int(recipe.checkpoint_every_steps),
        keep=int(recipe.checkpoint_max_to_keep) + 1,
        convert=lambda b: {k: v.numpy() for k, v in b.items()},
        steps_per_epoch=steps_per_epoch,
    )


def train_classifier(
    cfg,
    *,
    progress: bool = True,
    arrays: tuple[np.ndarray, np.ndarray] | None = None,
    eval_arrays: tuple[np.ndarray, np.ndarray] | None = None,
    mesh=None,
) -> dict[str, Any]:
    """Train the classifier a ``train-classifier`` config describes and evaluate it.

    Writes ``workdir/checkpoints/`` (resumable), ``workdir/classifier.json`` (the recipe),
    ``workdir/metrics.json`` and TensorBoard events.

    Args:
      cfg: a validated ``train-classifier`` config.
      progress: show a progress bar over epochs.
      arrays: the training ``(images, labels)`` (default: from the config's data).
      eval_arrays: the evaluation set (default: the real ``data.eval_split``).
      mesh: the device mesh (``synthaug.pipeline.runtime.stage_runtime``): data-parallel
        training over every process's devices; each example of the eval set is counted
        once across the processes.

    Returns:
      The summary: train/eval sizes, top-1/top-5 on the eval set, wall time.
    """
    import jax
    from tqdm.auto import tqdm

    from synthaug import classifiers as cl

    if arrays is None:
        check_classifier(cfg)
    t0 = time.perf_counter()
    recipe = recipe_config(cfg)
    stream = arrays is None and _streaming(cfg)
    if stream:
        epoch_batches, eval_batches, spe, composition = stream_datasets(cfg, recipe)
        images = labels = ev = None
    else:
        images, labels = arrays if arrays is not None else _train_arrays(cfg)
        ev = eval_arrays if eval_arrays is not None else _eval_arrays(cfg)
    from synthaug.pipeline import rundir

    workdir = rundir.claim(cfg.workdir, cfg, "train-classifier")
    primary = jax.process_index() == 0
    writer = MetricWriter(workdir) if primary else _NoWriter()
    epochs = int(recipe.epochs)
    bar = tqdm(
        total=epochs,
        desc=f"train-classifier {cfg.data.mode}",
        unit="epoch",
        disable=not (progress and primary),
        dynamic_ncols=True,
    )

    def log_fn(record):
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}")
        writer.scalars(
            record["step"],
            {
                f"train/{k}": v
                for k, v in record.items()
                if isinstance(v, int | float) and k not in ("step",)
            },
        )

    try:
        if stream:
            batch_at = _resumable_batches(recipe, epoch_batches.dataset, spe, workdir)
            state, history = cl.fit_stream(
                recipe,
                epoch_batches,
                steps_per_epoch=spe,
                rng=jax.random.key(int(recipe.seed)),
                eval_batches=eval_batches,
                checkpoint_dir=workdir / "checkpoints",
                log_fn=log_fn,
                batch_at=batch_at,
                mesh=mesh,
            )
        else:
            state, history = cl.fit(
                recipe,
                images,
                labels,
                rng=jax.random.key(int(recipe.seed)),
                checkpoint_dir=workdir / "checkpoints",
                log_fn=log_fn,
                mesh=mesh,
            )
    finally:
        bar.close()
    cl.save_classifier(workdir, recipe, state)  # classifier.json, once the state is saved
    summary: dict[str, Any] = {
        "stage": "train-classifier",
        "mode": cfg.data.mode,
        "model": recipe.model,
        "train_examples": int(spe * recipe.batch_size) if stream else int(len(labels)),
        "epochs": epochs,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "streaming": bool(stream),
    }
    if stream:
        summary["composition"] = composition
        summary["input"] = batch_at.report()
        last = history[-1] if history else {}
        if "eval_top1" in last:
            summary.update(
                top1=float(last["eval_top1"]),
                top5=float(last["eval_top5"]),
                eval_examples=int(last["eval_count"]),
            )
    if ev is not None:
        # Each process evaluates its own contiguous part; the counts add up across them.
        pi, pc = jax.process_index(), jax.process_count()
        part = np.array_split(np.arange(len(ev[1])), pc)[pi] if mesh is not None else None
        if part is not None:
            ev = (ev[0][part], ev[1][part])
        res = cl.evaluate(recipe, state, ev[0], ev[1], mesh=mesh)
        summary.update(
            top1=float(res["top1"]), top5=float(res["top5"]), eval_examples=int(res["count"])
        )
        writer.scalars(int(state.step), {"eval/top1": res["top1"], "eval/top5": res["top5"]})
    summary["wall_time_s"] = time.perf_counter() - t0
    writer.summary(train_classifier=summary)
    writer.close()
    return summary


class _NoWriter:
    """The metric writer of processes other than 0 (process 0 writes the files)."""

    def scalars(self, *args, **kwargs) -> None:
        pass

    summary = flush = close = scalars


def load_classifier(workdir):
    """``(recipe, state)`` of a classifier trained by :func:`train_classifier`
    (``synthaug.classifiers.load_classifier``)."""
    from synthaug import classifiers as cl

    workdir = require_dir(workdir, "classifier directory")
    try:
        return cl.load_classifier(workdir)
    except ValueError as e:
        raise ConfigError(str(e)) from None
