"""``synthaug evaluate``: FID, Inception Score, CAS / accuracy of a synthetic set or a classifier.

Metrics (``config.metrics``):

* ``fid``: Fréchet Inception distance of the synthetic set against reference statistics
  (``config.reference``: an ``.npz`` with ``mu`` and ``sigma``), Inception-v3 weights from
  ``config.inception_checkpoint`` (pytorch-fid ``.pth``, or an ``.npz`` of that state dict).
* ``inception_score``: the Inception Score of the synthetic set (same network).
* ``accuracy``: top-1 / top-5 of the classifier in ``config.classifier_dir`` on the real data
  ``config.real`` (for a classifier trained on synthetic data only, this is the CAS). The
  digits are evaluated in memory; an ImageNet split (``imagenet_tfds``, ``imagenet_folder``
  or ``imagenet_tfrecord``) streams through tf.data with the paper's evaluation
  preprocessing (shorter side resized to ``size * 256 / 224``, center crop ``size``), every
  example counted once; with several processes each reads its share and the counts are
  summed exactly.

With ``fid`` or ``inception_score``, ``workdir/sample_stats.npz`` holds the synthetic set's pool3 statistics
(``mu``, ``sigma``; ADM's format, so a later run can use it as its ``reference``).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir, require_file
from synthaug.pipeline.writer import MetricWriter

__all__ = ["METRICS", "check_evaluate", "evaluate", "sharded_statistics", "stream_accuracy"]

METRICS = ("fid", "inception_score", "accuracy")


def check_evaluate(cfg) -> None:
    """Every input of an evaluate config exists (raises before anything is written)."""
    if not cfg.workdir:
        raise ConfigError("evaluate needs config.workdir (where metrics.json goes)")
    unknown = [m for m in cfg.metrics if m not in METRICS]
    if unknown or not cfg.metrics:
        raise ConfigError(f"metrics must be a non-empty subset of {METRICS}, got {cfg.metrics}")
    if {"fid", "inception_score"} & set(cfg.metrics):
        require_dir(cfg.samples_dir, "synthetic samples directory (samples_dir)")
        require_file(cfg.inception_checkpoint, "Inception weights (inception_checkpoint)")
    if "fid" in cfg.metrics:
        require_file(cfg.reference, "FID reference statistics (reference)")
    if "accuracy" in cfg.metrics:
        require_dir(cfg.classifier_dir, "classifier directory (classifier_dir)")
        from synthaug.pipeline.data import check_source

        check_source(cfg.real)


def _my_part(n: int) -> slice:
    """This process's contiguous part of ``n`` examples (all of them when alone)."""
    import jax

    bounds = np.linspace(0, n, jax.process_count() + 1).astype(int)
    return slice(int(bounds[jax.process_index()]), int(bounds[jax.process_index() + 1]))


def _gather_rows(rows: np.ndarray) -> np.ndarray:
    """Every process's ``[n_p, ...]`` rows (any ``n_p``), concatenated in process order
    (a collective)."""
    import jax

    if jax.process_count() == 1:
        return rows
    from jax.experimental import multihost_utils

    counts = multihost_utils.process_allgather(np.asarray([len(rows)], np.int32))
    counts = np.asarray(counts).reshape(-1)
    padded = np.zeros((int(counts.max()), *rows.shape[1:]), rows.dtype)
    padded[: len(rows)] = rows
    every = np.asarray(multihost_utils.process_allgather(padded))  # [processes, max, ...]
    return np.concatenate([every[p, : counts[p]] for p in range(len(counts))])


def sharded_statistics(
    samples_dir, params, mesh, *, num_samples: int, batch_size: int, keep_logits: bool = False
) -> tuple[Any, np.ndarray | None, int]:
    """Pool3 statistics of the first ``num_samples`` images of a synthetic set, with the
    features computed over every device of every process of ``mesh``: each process takes its
    contiguous part of the images (every process reads the set), and the float64 sums are
    reduced exactly across processes (a collective).

    Args:
      samples_dir: a synthetic set (one directory or per-host directories).
      params: the FID Inception's parameters.
      mesh: the stage's mesh.
      num_samples: how many images (fewer if the set holds fewer).
      batch_size: images per step, rounded down to a multiple of the mesh's devices.
      keep_logits: also return this process's logits (without the classifier bias).

    Returns:
      ``(stats, logits or None, n)``: statistics over all ``n`` images.
    """
    from synthaug import imagenet_data as data
    from synthaug import metrics as mt
    from synthaug.pipeline.sample import sample_dirs

    dirs = sample_dirs(samples_dir)
    total = sum(int(data.read_manifest(d)["num_examples"]) for d in dirs)
    n = min(total, int(num_samples))
    mine = _my_part(n)

    def local_images():
        i = 0
        for d in dirs:
            for images, _ in data.read_synthetic(d).batch(256).as_numpy_iterator():
                lo, hi = max(mine.start - i, 0), min(mine.stop - i, len(images))
                if lo < hi:
                    yield images[lo:hi]
                i += len(images)
                if i >= mine.stop:
                    return

    first = next(iter(data.read_synthetic(dirs[0]).take(1).as_numpy_iterator()))[0]
    # The batch: a multiple of every device of the mesh (so of the process count too).
    devices = int(np.prod(list(mesh.shape.values())))
    batch = max(devices, int(batch_size) // devices * devices)
    feature_fn = mt.make_sharded_feature_fn(
        params, mesh, batch_size=batch, image_shape=first.shape[:2], logits_bias=False
    )
    stats, logits = mt.streaming_statistics(local_images(), feature_fn, keep_logits=keep_logits)
    return stats, logits, n


def _sharded_inception_metrics(cfg, mesh) -> tuple[dict[str, float], Any]:
    """FID and IS with the features computed over the mesh's devices and processes
    (:func:`sharded_statistics`), the logits gathered in image order. Returns the metrics
    and the statistics."""
    from synthaug import metrics as mt
    from synthaug.pipeline.fid_stats import load_inception

    stats, logits, n = sharded_statistics(
        cfg.samples_dir,
        load_inception(cfg.inception_checkpoint),
        mesh,
        num_samples=int(cfg.num_samples),
        batch_size=int(cfg.batch_size),
        keep_logits=True,
    )
    res: dict[str, float] = {"num_samples": float(n)}
    if "fid" in cfg.metrics:
        ref = mt.load_reference_npz(cfg.reference)
        if ref.mu is None or ref.sigma is None:
            raise ConfigError(f"reference {cfg.reference!r} holds no mu/sigma statistics")
        res["fid"] = float(mt.frechet_distance(stats.mean, stats.cov, ref.mu, ref.sigma))
    if "inception_score" in cfg.metrics:
        lg = np.zeros((0, 1008), np.float32) if logits is None else logits
        is_mean, is_std = mt.inception_score(_gather_rows(lg))  # every image, in order
        res["inception_score"], res["inception_score_std"] = float(is_mean), float(is_std)
    return res, stats


def _inception_metrics(cfg) -> tuple[dict[str, float], Any]:
    """FID and IS of the synthetic set through the FID Inception network (and the
    statistics)."""
    from synthaug import imagenet_data as data
    from synthaug import metrics as mt
    from synthaug.pipeline.fid_stats import load_inception

    params = load_inception(cfg.inception_checkpoint)
    # Published Inception Scores use the logits without the classifier bias.
    feature_fn = mt.make_feature_fn(params, batch_size=int(cfg.batch_size), logits_bias=False)
    stats = mt.RunningStats()
    logits = []
    n, limit = 0, int(cfg.num_samples)
    for d in data.synthetic_dirs(cfg.samples_dir):
        for images, _ in data.read_synthetic(d).batch(int(cfg.batch_size)).as_numpy_iterator():
            images = images[: limit - n]
            if len(images) == 0:
                break
            feats, lg = feature_fn(images)
            stats.update(np.asarray(feats, np.float64))
            logits.append(np.asarray(lg))
            n += len(images)
    res: dict[str, float] = {"num_samples": float(n)}
    if "fid" in cfg.metrics:
        ref = mt.load_reference_npz(cfg.reference)
        if ref.mu is None or ref.sigma is None:
            raise ConfigError(f"reference {cfg.reference!r} holds no mu/sigma statistics")
        res["fid"] = float(mt.frechet_distance(stats.mean, stats.cov, ref.mu, ref.sigma))
    if "inception_score" in cfg.metrics:
        is_mean, is_std = mt.inception_score(np.concatenate(logits))
        res["inception_score"], res["inception_score_std"] = float(is_mean), float(is_std)
    return res, stats


def stream_accuracy(recipe, state, real_cfg, *, batch_size: int = 250, mesh=None) -> dict[str, Any]:
    """Top-1 / top-5 of a classifier on a real ImageNet split streamed through tf.data.

    Args:
      recipe: the classifier's recipe config (``image_size``, ``num_classes``).
      state: its train state (or ``{"params", "batch_stats"}``), placed for ``mesh``.
      real_cfg: a ``data`` config group (``source``, ``data_dir``, ``split``).
      batch_size: the global evaluation batch (rounded down to a multiple of the mesh's
        devices; the last batch is padded and masked).
      mesh: optional mesh (``synthaug.pipeline.runtime.stage_runtime``): every device of
        every process evaluates, each process streaming its own part of the split.

    Returns:
      ``{"top1", "top5", "count"}``: exact fractions over every example of the split.
    """
    import jax

    from synthaug import classifiers as cl
    from synthaug.pipeline.data import eval_batches

    bs = int(batch_size)
    if bs < 1:
        raise ConfigError(f"batch_size must be >= 1, got {bs}")
    local_bs = cl.local_batch_size(cl.eval_batch_size(recipe, bs, mesh), mesh)
    ds = eval_batches(
        real_cfg,
        split=real_cfg.split,
        image_size=int(recipe.image_size),
        batch_size=local_bs,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    acc = cl.evaluate_batches(
        recipe, state, ds.as_numpy_iterator(), batch_size=bs, mesh=mesh, name="real data"
    )
    if acc["count"] == 0:
        raise ConfigError(
            f"real data {real_cfg.source} split {real_cfg.split!r} in {real_cfg.data_dir!r} "
            "holds no readable images"
        )
    return acc


def _placed(state, mesh):
    """The restored classifier's variables replicated over ``mesh`` (None: as they are)."""
    if mesh is None:
        return state
    from synthaug import tpu_launch as tl

    return tl.shard_params({"params": state.params, "batch_stats": state.batch_stats}, [], mesh)


def evaluate(cfg, *, progress: bool = True, mesh=None) -> dict[str, Any]:
    """Compute the metrics an ``evaluate`` config asks for; writes ``workdir/metrics.json``.

    With ``mesh`` (``synthaug.pipeline.runtime.stage_runtime``) the Inception features and
    the classifier are computed over every device of every process, each process on its own
    part of the images, and the statistics and counts reduced exactly across processes;
    process 0 writes ``metrics.json`` (and ``sample_stats.npz``, the synthetic set's pool3
    ``mu`` / ``sigma``, when FID or IS is asked for).
    """
    import jax

    from synthaug import classifiers as cl
    from synthaug.pipeline.classify import load_classifier
    from synthaug.pipeline.data import digits_subset

    check_evaluate(cfg)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"stage": "evaluate"}
    stats = None
    if {"fid", "inception_score"} & set(cfg.metrics):
        if mesh is None:
            metrics, stats = _inception_metrics(cfg)
        else:
            metrics, stats = _sharded_inception_metrics(cfg, mesh)
        res.update(metrics)
    if "accuracy" in cfg.metrics:
        recipe, state = load_classifier(cfg.classifier_dir)
        if cfg.real.source == "digits":
            x, y = digits_subset(cfg.real.split, int(recipe.image_size))
            if mesh is not None:  # each process its own part; counts summed once
                part = _my_part(len(y))
                x, y = x[part], y[part]
            acc = cl.evaluate(recipe, _placed(state, mesh), x, y, mesh=mesh)
        else:
            acc = stream_accuracy(
                recipe, _placed(state, mesh), cfg.real, batch_size=int(cfg.batch_size), mesh=mesh
            )
        res.update(
            top1=float(acc["top1"]), top5=float(acc["top5"]), eval_examples=int(acc["count"])
        )
    res["paper"] = {k: v for k, v in cfg.paper.to_dict().items() if v != -1.0}
    res["wall_time_s"] = time.perf_counter() - t0
    if jax.process_index() == 0:
        w = MetricWriter(pathlib.Path(cfg.workdir))
        if stats is not None and stats.count >= 2:
            from synthaug import metrics as mt

            path = pathlib.Path(cfg.workdir) / "sample_stats.npz"
            mt.save_reference_npz(path, mu=stats.mean, sigma=stats.cov)
        w.scalars(0, {k: v for k, v in res.items() if isinstance(v, float)})
        w.summary(evaluate=res)
        w.close()
    return res
