"""``synthaug evaluate``: FID, Inception Score, CAS / accuracy of a synthetic set or a classifier.

Metrics (``config.metrics``):

* ``fid``: Fréchet Inception distance of the synthetic set against reference statistics
  (``config.reference``: an ``.npz`` with ``mu`` and ``sigma``), Inception-v3 weights from
  ``config.inception_checkpoint`` (pytorch-fid ``.pth``).
* ``inception_score``: the Inception Score of the synthetic set (same network).
* ``accuracy``: top-1 / top-5 of the classifier in ``config.classifier_dir`` on the real data
  ``config.real`` (for a classifier trained on synthetic data only, this is the CAS).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir, require_file
from synthaug.pipeline.writer import MetricWriter

__all__ = ["METRICS", "check_evaluate", "evaluate"]

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


def _inception_metrics(cfg) -> dict[str, float]:
    """FID and IS of the synthetic set through the FID Inception network."""
    from synthaug import imagenet_data as data
    from synthaug import metrics as mt
    from synthaug.pipeline.sample import sample_dirs

    params = mt.load_fid_inception(cfg.inception_checkpoint)
    # Published Inception Scores use the logits without the classifier bias.
    feature_fn = mt.make_feature_fn(params, batch_size=int(cfg.batch_size), logits_bias=False)
    stats = mt.RunningStats()
    logits = []
    n, limit = 0, int(cfg.num_samples)
    for d in sample_dirs(cfg.samples_dir):
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
    return res


def evaluate(cfg, *, progress: bool = True) -> dict[str, Any]:
    """Compute the metrics an ``evaluate`` config asks for; writes ``workdir/metrics.json``."""
    from synthaug import classifiers as cl
    from synthaug.pipeline.classify import load_classifier
    from synthaug.pipeline.data import digits_subset

    check_evaluate(cfg)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"stage": "evaluate"}
    if {"fid", "inception_score"} & set(cfg.metrics):
        res.update(_inception_metrics(cfg))
    if "accuracy" in cfg.metrics:
        recipe, state = load_classifier(cfg.classifier_dir)
        if cfg.real.source != "digits":
            raise ConfigError(
                "accuracy on ImageNet streams through tf.data on the pod; "
                "here config.real.source must be 'digits'"
            )
        x, y = digits_subset(cfg.real.split, int(recipe.image_size))
        acc = cl.evaluate(recipe, state, x, y)
        res.update(top1=float(acc["top1"]), top5=float(acc["top5"]), eval_examples=acc["count"])
    res["paper"] = {k: v for k, v in cfg.paper.to_dict().items() if v != -1.0}
    res["wall_time_s"] = time.perf_counter() - t0
    w = MetricWriter(pathlib.Path(cfg.workdir))
    w.scalars(0, {k: v for k, v in res.items() if isinstance(v, float)})
    w.summary(evaluate=res)
    w.close()
    return res
