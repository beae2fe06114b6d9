"""Exact evaluation and features over an eval set, every example counted once.

Each process passes its own examples (with one process: all of them). They are cut into
local batches of ``eval_batch_size x (this process's devices / mesh devices)``; the last
batch is padded and masked. Processes that run out of examples early keep stepping with
all-padding batches until every process is done (one small collective per batch), so the
counts are sums over every process's examples, equal to a one-process evaluation of the
union.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from synthaug.classifiers import parallel
from synthaug.classifiers.state import model_from_config
from synthaug.classifiers.steps import make_eval_step, make_feature_fn

__all__ = ["eval_batch_size", "evaluate", "evaluate_batches", "predict_features"]


def check_images(images, labels, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``images`` as uint8/float ``[N, H, W, 3]`` and ``labels`` as int32 ``[N]``."""
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


def check_label_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if a label is outside ``[0, num_classes)``."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must be in [0, {num_classes}) (config.num_classes), got range "
            f"[{labels.min()}, {labels.max()}]"
        )


def eval_batch_size(config, batch_size: int | None, mesh: Mesh | None) -> int:
    """The global eval batch: ``batch_size or config.eval_batch_size``, rounded down to a
    multiple of the mesh's devices (at least one per device)."""
    bs = int(batch_size or config.eval_batch_size)
    d = parallel.data_size(mesh)
    return max(d, (bs // d) * d)


def local_chunks(batches: Iterable[dict], local_bs: int, name: str) -> Iterator[tuple]:
    """``(images, labels)`` pieces of at most ``local_bs`` examples from any-size batches."""
    for b in batches:
        if not isinstance(b, dict) or "images" not in b or "labels" not in b:
            raise ValueError(f"{name}: each batch must be a dict with 'images' and 'labels'")
        images, labels = check_images(b["images"], b["labels"], name)
        for s in range(0, images.shape[0], local_bs):
            yield images[s : s + local_bs], labels[s : s + local_bs]


def _padded(images, labels, local_bs: int) -> dict:
    n = images.shape[0]
    pad = local_bs - n
    return {
        "images": np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)]),
        "labels": np.concatenate([labels, np.zeros((pad,), labels.dtype)]),
        "mask": np.arange(local_bs) < n,
    }


def _lockstep(chunks: Iterator[tuple], local_bs: int, template: tuple) -> Iterator[dict]:
    """Padded local batches, continued with all-padding ones until every process is done."""
    multi = jax.process_count() > 1
    while True:
        item = next(chunks, None)
        if multi:
            if not parallel.process_all(item is not None).any():
                return
        elif item is None:
            return
        if item is None:
            images, labels = template
            item = (images[:0], labels[:0])
        yield _padded(*item, local_bs)


def sum_eval(eval_step, state, chunks: Iterator[tuple], global_bs: int, mesh, template) -> dict:
    """Exact top-1/top-5/mean loss over the chunks (of at most this process's share of
    ``global_bs`` examples each) of every process; one device-to-host transfer at the end.

    Raises:
      ValueError: a label outside ``[0, num_classes)`` on any process.
    """
    totals = None
    local_bs = parallel.local_batch_size(global_bs, mesh)
    for batch in _lockstep(chunks, local_bs, template):
        sums = eval_step(state, parallel.global_batch(batch, mesh, global_bs))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    if totals is None:
        return {"top1": 0.0, "top5": 0.0, "loss": 0.0, "count": 0}
    t = jax.device_get(totals)
    count = int(t["count"])
    if int(t["bad_labels"]):
        raise ValueError(
            f"eval labels: {int(t['bad_labels'])} of {count} examples are outside "
            "[0, config.num_classes)"
        )
    return {
        "top1": int(t["correct1"]) / max(count, 1),
        "top5": int(t["correct5"]) / max(count, 1),
        "loss": float(t["loss"]) / max(count, 1),
        "count": count,
    }


def template_of(config, images=None) -> tuple:
    if images is not None:
        return images[:0], np.zeros((0,), np.int32)
    s = int(config.image_size)
    return np.zeros((0, s, s, 3), np.uint8), np.zeros((0,), np.int32)


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
    batch size, the number of devices or the number of processes. With a mesh across
    processes each process passes its own examples (any number, possibly none) and the
    result is over all of them.

    Args:
      config: the recipe config the model was trained with.
      state: a :class:`TrainState` (or ``{"params", "batch_stats"}``).
      images: uint8 ``[N, H, W, 3]``.
      labels: int ``[N]`` in ``[0, config.num_classes)``.
      batch_size: the global batch (default ``config.eval_batch_size``; rounded to the
        device count).
      mesh: optional mesh.

    Returns:
      ``{"top1", "top5", "loss", "count"}``.

    Raises:
      ValueError: malformed images or labels, or a label outside ``[0, num_classes)``.
    """
    images, labels = check_images(images, labels, "eval")
    check_label_range(labels, int(config.num_classes), "eval_labels")
    batches = [{"images": images, "labels": labels}]
    return _evaluate(config, state, batches, batch_size, mesh, "eval", template_of(config, images))


def evaluate_batches(
    config: ml_collections.ConfigDict,
    state: Any,
    batches: Iterable[dict],
    *,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    name: str = "eval_batches",
) -> dict:
    """:func:`evaluate` over a stream: ``batches`` of any sizes (e.g. a tf.data pipeline's
    ``as_numpy_iterator()``), each example counted once, never all in memory at once.

    The batches are re-cut into this process's share of the global batch, so the result
    does not depend on their sizes, the device count or the process count. With a mesh
    across processes each process streams its own examples (any number, possibly none).

    Args:
      config: the recipe config the model was trained with.
      state: a :class:`TrainState` (or ``{"params", "batch_stats"}``), placed for ``mesh``.
      batches: dicts of uint8 ``"images"`` ``[b, H, W, 3]`` and int ``"labels"`` ``[b]``.
      batch_size: the global batch (default ``config.eval_batch_size``; rounded to the
        device count).
      mesh: optional mesh.
      name: how errors name the input.

    Returns:
      ``{"top1", "top5", "loss", "count"}``.

    Raises:
      ValueError: a batch that is not such a dict, or a label outside ``[0, num_classes)``.
    """
    return _evaluate(config, state, batches, batch_size, mesh, name, template_of(config))


def _evaluate(config, state, batches, batch_size, mesh, name, template) -> dict:
    step = make_eval_step(model_from_config(config), config, mesh)
    gbs = eval_batch_size(config, batch_size, mesh)
    lbs = parallel.local_batch_size(gbs, mesh)
    return sum_eval(step, state, local_chunks(batches, lbs, name), gbs, mesh, template)


def predict_features(
    config: ml_collections.ConfigDict,
    state: Any,
    images: np.ndarray,
    *,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Penultimate-layer features (ResNet: pooled; ViT: final-norm class token or mean).

    Args:
      config: the recipe config the model was trained with.
      state: a :class:`TrainState` (or ``{"params", "batch_stats"}``).
      images: uint8 ``[N, H, W, 3]`` (this process's examples).
      batch_size: default ``config.eval_batch_size``.
      mesh: optional mesh.

    Returns:
      float32 ``[N, D]`` numpy array, the features of this process's images.
    """
    images, _ = check_images(images, None, "feature")
    fn = make_feature_fn(model_from_config(config), config, mesh)
    gbs = eval_batch_size(config, batch_size, mesh)
    lbs = parallel.local_batch_size(gbs, mesh)
    labels = np.zeros((images.shape[0],), np.int32)
    chunks = local_chunks([{"images": images, "labels": labels}], lbs, "feature")
    out = []
    for batch in _lockstep(chunks, lbs, template_of(config, images)):
        feats = fn(state, parallel.global_batch({"images": batch["images"]}, mesh, gbs)["images"])
        out.append(parallel.local_rows(feats).astype(np.float32)[batch["mask"]])
    return np.concatenate(out, axis=0)
