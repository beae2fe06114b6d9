"""``synthaug select-checkpoint``: rank the kept checkpoints of a finetune run by FID.

The paper picked its fine-tuned checkpoints by FID on 10K samples against ImageNet val. This
stage does that for one cascade stage: ``select.stage`` names the stage (``base`` or ``sr1``)
whose ``checkpoint`` is the finetune workdir; for every step kept there (``train.keep`` of the
finetune config), it samples ``select.num_samples`` class-balanced images through the cascade
of the config (the other stages fixed, as ``sample`` would run them: same labels, same keys,
so every checkpoint is scored on the same noise) and computes their FID against
``select.reference`` (an ``.npz`` with ``mu`` / ``sigma``, e.g. from ``synthaug fid-stats``).

It writes ``select.out`` (default ``<finetune workdir>/checkpoint_selection.json``) atomically
after each checkpoint: ``{"ranking": [{"step", "fid"}, ...] (best first), "best_step",
"best_fid", "complete", ...}``; a rerun with the same settings skips the steps already scored.
``sample`` then uses the best one with ``--config.base.checkpoint_step=<best_step>``.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import time
from typing import Any

import ml_collections
import numpy as np

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_file, write_json

__all__ = [
    "SELECTION_FILE",
    "check_select_checkpoint",
    "select_checkpoint",
    "select_checkpoint_schema",
]

SELECTION_FILE = "checkpoint_selection.json"


def select_checkpoint_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug select-checkpoint``: the sample schema plus a ``select`` group."""
    from synthaug.pipeline.schemas import sample_schema

    c = sample_schema()
    c.stage = "select-checkpoint"
    c.select = ml_collections.ConfigDict(
        {
            # The cascade stage whose `checkpoint` (a finetune workdir) is ranked.
            "stage": "base",
            # Samples per checkpoint (the paper: 10K), class-balanced over `classes`.
            "num_samples": 10_000,
            # FID reference statistics (.npz with mu / sigma) and the Inception weights.
            "reference": "",
            "inception_checkpoint": "",
            # Images per Inception call.
            "fid_batch_size": 250,
            # Only these steps (() = every kept step).
            "steps": (),
            # The ranking (JSON); "" = <finetune workdir>/checkpoint_selection.json.
            "out": "",
        }
    )
    return c


def _sample_config(cfg, step: int, out_dir: pathlib.Path, per_class: int, num_classes: int):
    """The ``sample`` config that draws the images of one checkpoint."""
    from synthaug.pipeline.config import validate

    d = cfg.to_dict()
    d.pop("select")
    d["stage"] = "sample"
    d["workdir"] = ""
    d["out_dir"] = str(out_dir)
    d["per_class"] = per_class
    d["shard_size"] = per_class * num_classes  # one shard
    d[cfg.select.stage]["checkpoint_step"] = int(step)
    return validate(d, "sample")


def check_select_checkpoint(cfg) -> list[int]:
    """Check the inputs before anything is written; returns the steps to score."""
    from synthaug.pipeline.models import checkpoint_steps
    from synthaug.pipeline.sample import STAGE_KEYS, check_sample

    sel = cfg.select
    if sel.stage not in STAGE_KEYS or not cfg[sel.stage].enabled:
        raise ConfigError(f"select.stage must be an enabled cascade stage, got {sel.stage!r}")
    if int(sel.num_samples) < 2:
        raise ConfigError(f"select.num_samples must be >= 2, got {sel.num_samples}")
    if int(sel.fid_batch_size) < 1:
        raise ConfigError(f"select.fid_batch_size must be >= 1, got {sel.fid_batch_size}")
    require_file(sel.reference, "FID reference statistics (select.reference)")
    require_file(sel.inception_checkpoint, "Inception weights (select.inception_checkpoint)")
    probe = cfg.to_dict()
    probe.pop("select")
    probe.update(stage="sample", out_dir="unused", per_class=1)
    from synthaug.pipeline.config import validate

    check_sample(validate(probe, "sample"))
    kept = checkpoint_steps(cfg[sel.stage].checkpoint)
    if not kept:
        raise ConfigError(
            f"{sel.stage}.checkpoint {cfg[sel.stage].checkpoint!r} holds no checkpoint"
        )
    steps = [int(s) for s in sel.steps] or kept
    missing = sorted(set(steps) - set(kept))
    if missing:
        raise ConfigError(
            f"select.steps {missing} are not kept in {cfg[sel.stage].checkpoint!r} (kept: {kept})"
        )
    return steps


def _settings(cfg) -> dict[str, Any]:
    d = cfg.to_dict()
    d["select"].pop("steps")
    d["select"].pop("out")
    d.pop("hardware", None)
    d.pop("paper", None)
    return d


def select_checkpoint(cfg, *, progress: bool = True) -> dict[str, Any]:
    """Score every kept checkpoint of ``cfg[select.stage].checkpoint`` by FID; write the ranking.

    Returns:
      The selection written to ``select.out``.
    """
    from synthaug import metrics as mt
    from synthaug.imagenet_data import synthetic_dirs as sample_dirs
    from synthaug.pipeline.classes import class_names, resolve_classes
    from synthaug.pipeline.fid_stats import load_inception
    from synthaug.pipeline.sample import sample
    from synthaug.pipeline.text import class_embeddings

    steps = check_select_checkpoint(cfg)
    t0 = time.perf_counter()
    sel = cfg.select
    workdir = pathlib.Path(cfg[sel.stage].checkpoint)
    out = pathlib.Path(sel.out) if sel.out else workdir / SELECTION_FILE
    settings = _settings(cfg)
    scores: dict[int, float] = {}
    if out.is_file():
        try:
            prev = json.loads(out.read_text())
        except ValueError:
            prev = {}
        if prev.get("settings") == json.loads(json.dumps(settings)):
            scores = {int(r["step"]): float(r["fid"]) for r in prev.get("ranking", [])}
    ref = mt.load_reference_npz(sel.reference)
    if ref.mu is None:
        raise ConfigError(f"select.reference {sel.reference!r} holds no mu/sigma statistics")
    labels = resolve_classes(cfg.dataset, cfg.classes)
    n = int(sel.num_samples)
    per_class = math.ceil(n / len(labels))
    text = class_embeddings(cfg.text, class_names(cfg.dataset), workdir=out.parent)
    params = load_inception(sel.inception_checkpoint)
    feature_fn = mt.make_feature_fn(params, batch_size=int(sel.fid_batch_size), logits_bias=False)
    scratch = out.parent / f".{out.name}.samples"

    def write(complete: bool) -> dict[str, Any]:
        ranking = sorted(({"step": s, "fid": f} for s, f in scores.items()), key=lambda r: r["fid"])
        result = {
            "stage": "select-checkpoint",
            "selected_stage": sel.stage,
            "workdir": str(workdir),
            "num_samples": n,
            "reference": str(sel.reference),
            "ranking": ranking,
            "best_step": ranking[0]["step"] if ranking else None,
            "best_fid": ranking[0]["fid"] if ranking else None,
            "complete": complete,
            "settings": settings,
            "wall_time_s": time.perf_counter() - t0,
        }
        write_json(out, result)
        return result

    for step in steps:
        if step in scores:
            continue
        shutil.rmtree(scratch, ignore_errors=True)
        scfg = _sample_config(cfg, step, scratch, per_class, len(labels))
        sample(scfg, progress=progress, text=text)
        stats = mt.RunningStats()
        count = 0
        for d in sample_dirs(scratch):
            for images, _ in _batches(d, int(sel.fid_batch_size)):
                images = images[: n - count]
                if len(images) == 0:
                    break
                stats.update(np.asarray(feature_fn(images)[0], np.float64))
                count += len(images)
        shutil.rmtree(scratch, ignore_errors=True)
        scores[step] = float(mt.frechet_distance(stats.mean, stats.cov, ref.mu, ref.sigma))
        write(complete=False)
    return write(complete=True)


def _batches(directory, batch_size: int):
    """``(uint8 images, labels)`` batches of a synthetic set, in index order."""
    from synthaug import imagenet_data as data

    images, labels = [], []
    for img, lab in data.iter_synthetic(directory):
        images.append(img)
        labels.append(lab)
        if len(images) == batch_size:
            yield np.stack(images), np.asarray(labels)
            images, labels = [], []
    if images:
        yield np.stack(images), np.asarray(labels)
