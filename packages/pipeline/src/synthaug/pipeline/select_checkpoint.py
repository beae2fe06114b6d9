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


def _sample_config(
    cfg, step: int, out_dir: pathlib.Path, per_class: int, num_classes: int, processes: int = 1
):
    """The ``sample`` config that draws the images of one checkpoint.

    Its shards are whole batches, as many as give each of ``processes`` a part: batches then
    start at multiples of ``batch_size`` whatever the process count, so every process count
    draws the same images (``sample`` keys a batch by its first index)."""
    from synthaug.pipeline.config import validate

    total = per_class * num_classes
    bsz = int(cfg.batch_size)
    d = cfg.to_dict()
    d.pop("select")
    d["stage"] = "sample"
    d["workdir"] = ""
    d["out_dir"] = str(out_dir)
    d["per_class"] = per_class
    d["shard_size"] = bsz * max(1, total // (bsz * processes))
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


def select_checkpoint(cfg, *, progress: bool = True, mesh=None) -> dict[str, Any]:
    """Score every kept checkpoint of ``cfg[select.stage].checkpoint`` by FID; write the ranking.

    On several processes (``synthaug-launch``, a pod slice) each process samples its own
    part of every checkpoint's images (as ``sample`` does) and the Inception features are
    computed over every device of the mesh, the statistics reduced across processes
    (:func:`synthaug.pipeline.evaluate.sharded_statistics`); process 0 writes the ranking.
    The sample scratch directory lies next to ``select.out``, which every process must see.

    Args:
      cfg: a validated ``select-checkpoint`` config.
      progress: show progress bars.
      mesh: the stage's mesh (default: ``stage_runtime(cfg)``, every device).

    Returns:
      The selection written to ``select.out``.
    """
    import jax

    from synthaug import metrics as mt
    from synthaug.pipeline.classes import class_names, resolve_classes
    from synthaug.pipeline.evaluate import sharded_statistics
    from synthaug.pipeline.fid_stats import load_inception
    from synthaug.pipeline.runtime import barrier, stage_runtime
    from synthaug.pipeline.sample import sample
    from synthaug.pipeline.text import class_embeddings

    steps = check_select_checkpoint(cfg)
    if mesh is None:
        mesh = stage_runtime(cfg)
    lead = jax.process_index() == 0
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
        if lead:
            write_json(out, result)
        return result

    def clear_scratch(name: str) -> None:
        # Every process is done with the scratch samples before process 0 removes them.
        barrier(f"synthaug-select-{name}")
        if lead:
            shutil.rmtree(scratch, ignore_errors=True)
        barrier(f"synthaug-select-{name}-cleared")

    for step in steps:
        if step in scores:
            continue
        clear_scratch(f"before-{step}")
        scfg = _sample_config(cfg, step, scratch, per_class, len(labels), jax.process_count())
        sample(scfg, progress=progress and lead, text=text, mesh=mesh)
        barrier(f"synthaug-select-sampled-{step}")  # every process's shards are written
        stats, _, _ = sharded_statistics(
            scratch, params, mesh, num_samples=n, batch_size=int(sel.fid_batch_size)
        )
        scores[step] = float(mt.frechet_distance(stats.mean, stats.cov, ref.mu, ref.sigma))
        write(complete=False)
    clear_scratch("done")
    return write(complete=True)
