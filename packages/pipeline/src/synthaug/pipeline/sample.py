"""``synthaug sample``: a class-balanced synthetic data set from the diffusion cascade.

The label set is ``per_class`` copies of the chosen classes, interleaved (example ``i`` has
label ``labels[i % K]``), so every prefix of the set is nearly balanced. Examples are
generated shard by shard, in batches that start at fixed indices, each batch from the key
``fold_in(key(seed), first index of the batch)``: what an example looks like does not depend
on how often the run was interrupted. Shards go through
``synthaug.imagenet_data.SyntheticShardWriter``, which keeps only complete shards, so a
killed run resumes at its first missing shard with nothing duplicated or lost.

On several processes (``jax.process_count() > 1``) process ``p`` takes a contiguous,
shard-aligned range of the examples and writes it to its own directory under ``out_dir``
(``synthaug.imagenet_data.host_range`` and ``host_dir``), each batch split over its own
devices. Batches start at the same indices whatever the number of processes or devices (shard
starts plus multiples of ``batch_size``) and their random numbers do not depend on how they
are split over devices, so the union of the processes' shards holds exactly the images of a
1-process run. Each process resumes its own range.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import shutil
import time
from typing import Any

import numpy as np

from synthaug.imagenet_data.synthetic import host_range, synthetic_dirs
from synthaug.pipeline.classes import class_names, resolve_classes
from synthaug.pipeline.errors import ConfigError, PipelineError
from synthaug.pipeline.io import require_dir
from synthaug.pipeline.writer import MetricWriter

__all__ = [
    "STAGE_KEYS",
    "NonFiniteSamplesError",
    "build_cascade",
    "check_sample",
    "check_sampler_settings",
    "host_range",
    "label_plan",
    "sample",
    "sample_dirs",
    "to_uint8",
]

STAGE_KEYS = ("base", "sr1", "sr2")
#: The schedules the samplers discretize have this many steps (``steps`` respaces them).
TRAIN_STEPS = 1000


class NonFiniteSamplesError(PipelineError):
    """A cascade produced NaN or infinite samples; none of them were written."""


def _enabled(cfg) -> list[str]:
    keys = [k for k in STAGE_KEYS if cfg[k].enabled]
    if not keys or keys[0] != "base":
        raise ConfigError("sample needs the base stage enabled (config.base.enabled=true)")
    if keys != list(STAGE_KEYS[: len(keys)]):
        raise ConfigError(f"cascade stages must be enabled in order base, sr1, sr2; got {keys}")
    return keys


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def check_sampler_settings(cfg) -> list[str]:
    """Check the sampler settings of every enabled stage; returns the enabled stage keys.

    Guidance must be finite and >= 0 (Imagen convention: 1.0 is no guidance), the
    log-variance mix and the noise-augmentation level in [0, 1], the threshold percentile in
    (0, 100], the steps in [1, 1000] (the respaced 1000-step schedule).

    Raises:
      ConfigError: the first bad setting, naming its key.
    """
    keys = _enabled(cfg)
    for key in keys:
        st = cfg[key]
        if st.sampler not in ("ddpm", "ddim"):
            raise ConfigError(f"{key}.sampler must be 'ddpm' or 'ddim', got {st.sampler!r}")
        if not _finite(st.guidance) or st.guidance < 0:
            raise ConfigError(
                f"{key}.guidance must be a finite number >= 0 (1.0 = no guidance), got "
                f"{st.guidance!r}"
            )
        for name in ("log_var_mix", "aug_level"):
            if not _finite(st[name]) or not 0.0 <= st[name] <= 1.0:
                raise ConfigError(f"{key}.{name} must lie in [0, 1], got {st[name]!r}")
        q = st.threshold_percentile
        if not _finite(q) or not 0.0 < q <= 100.0:
            raise ConfigError(f"{key}.threshold_percentile must lie in (0, 100], got {q!r}")
        if not 1 <= int(st.steps) <= TRAIN_STEPS:
            raise ConfigError(f"{key}.steps must lie in [1, {TRAIN_STEPS}], got {st.steps}")
    return keys


def check_sample(cfg, *, models: dict | None = None) -> list[int]:
    """Check a sample config before anything is written; returns the labels.

    Args:
      cfg: a validated ``sample`` config.
      models: stage models passed in memory (their checkpoints are not needed).
    """
    if not (cfg.out_dir or cfg.workdir):
        raise ConfigError("sample needs config.out_dir (or config.workdir)")
    for name in ("per_class", "shard_size", "batch_size"):
        if cfg[name] < 1:
            raise ConfigError(f"{name} must be >= 1, got {cfg[name]}")
    labels = resolve_classes(cfg.dataset, cfg.classes)
    for key in check_sampler_settings(cfg):
        st = cfg[key]
        if not (models and key in models):
            require_dir(st.checkpoint, f"{key} checkpoint directory ({key}.checkpoint)")
    if cfg.text.checkpoint and not pathlib.Path(cfg.text.checkpoint).exists():
        require_dir(cfg.text.checkpoint, "text encoder checkpoint (text.checkpoint)")
    if cfg.text.tokenizer and not pathlib.Path(cfg.text.tokenizer).is_file():
        require_dir(cfg.text.tokenizer, "SentencePiece tokenizer (text.tokenizer)")
    if cfg.get("image_format", "png") not in ("png", "jpeg"):
        raise ConfigError(f"image_format must be 'png' or 'jpeg', got {cfg.image_format!r}")
    if not 1 <= cfg.get("jpeg_quality", 95) <= 100:
        raise ConfigError(f"jpeg_quality must be in [1, 100], got {cfg.jpeg_quality}")
    return labels


def label_plan(labels: list[int], per_class: int) -> np.ndarray:
    """The labels of the whole synthetic set, classes interleaved: ``[per_class * K]``."""
    return np.tile(np.asarray(labels, np.int32), per_class)


def to_uint8(x) -> np.ndarray:
    """Samples in [-1, 1] to uint8 images."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def build_cascade(
    cfg, *, text_dim: int, models: dict | None = None, traced_guidance: tuple[str, ...] = ()
) -> list:
    """``synthaug.samplers.CascadeStage`` s for the enabled stages of a sample config.

    Args:
      cfg: a validated ``sample`` config.
      text_dim: the text encoder's width.
      models: ``{stage key: (diffusion config, model, params)}`` already loaded (the demo
        passes its freshly trained models); others are loaded from ``<key>.checkpoint``.
      traced_guidance: stage keys whose guidance weight is passed as an array, so that one
        compiled sampler serves every weight (w = 1 then costs a doubled batch, as any w).
    """
    import jax.numpy as jnp

    from synthaug import samplers
    from synthaug.pipeline.models import load_stage_model

    stages = []
    for key in _enabled(cfg):
        st = cfg[key]
        if models and key in models:
            dcfg, model, params = models[key]
        else:
            step = None if int(st.checkpoint_step) < 0 else int(st.checkpoint_step)
            dcfg, model, params = load_stage_model(
                st.checkpoint, st.preset, text_dim=text_dim, step=step
            )
        pretrained = _pretrained_settings(dcfg)
        stages.append(
            samplers.CascadeStage(
                model_fn=samplers.UNetModelFn(model.apply),
                params=params,
                schedule=dcfg.diffusion.schedule,
                resolution=int(dcfg.model.image_size),
                guidance_scale=(
                    jnp.float32(st.guidance) if key in traced_guidance else float(st.guidance)
                ),
                log_var_mix=float(st.log_var_mix),
                sampler=st.sampler,
                num_steps=int(st.steps),
                aug_level=float(st.aug_level),
                threshold_percentile=float(st.threshold_percentile),
                prediction_type=dcfg.diffusion.prediction_type,
                **pretrained,
            )
        )
    return stages


def _pretrained_settings(dcfg) -> dict:
    """Sampler settings of a model as it was trained. The low-res input of an SR stage is
    conditioned in the preset's ``diffusion.aug_order`` with its ``aug_schedule`` and
    ``resize_method`` (Imagen: noise, then resize; DeepFloyd IF-II: align-corners resize, then
    noise at the integer step; ADM's upsamplers: resize only). Imagen U-Nets get dynamic
    thresholding; ADM (class-conditional, ``kind="adm"`` without text) clips ``x0`` to [-1, 1]
    (guided-diffusion's ``clip_denoised``); DeepFloyd IF keeps dynamic thresholding. Both read
    their learned-range variance output."""
    from synthaug import diffusion_core as dc

    try:
        lowres = dc.lowres_settings(dcfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    settings = {
        "aug_order": lowres["order"],
        "aug_schedule": lowres["aug_schedule"],
        "upsample_method": lowres["resize_method"],
    }
    m = dcfg.model
    if m.get("kind") != "adm":
        return {"thresholding": "dynamic", **settings}
    text = m.get("text_dim", None) is not None
    return {
        "thresholding": "dynamic" if text else "static",
        "variance": dcfg.diffusion.get("variance", "fixed"),
        **settings,
    }


def _uses_text(cfg) -> bool:
    """Whether any enabled stage's preset takes text (ADM's presets take class labels)."""
    from synthaug import diffusion_core as dc

    for key in _enabled(cfg):
        try:
            m = dc.get_preset(cfg[key].preset).model
        except KeyError:
            return True
        if m.get("kind") != "adm" or m.get("text_dim", None) is not None:
            return True
    return False


def _takes_labels(cfg, models: dict | None) -> bool:
    """Whether an enabled stage is a class-conditional model (ADM's ``kind="adm"``); only
    then do the batches carry ``labels`` (a text U-Net takes no such argument)."""
    from synthaug import diffusion_core as dc

    for key in _enabled(cfg):
        if models and key in models:
            kind = models[key][0].model.get("kind")
        else:
            try:
                kind = dc.get_preset(cfg[key].preset).model.get("kind")
            except KeyError:
                continue
        if kind == "adm":
            return True
    return False


def _null_condition(cfg, names, workdir) -> dict:
    """DeepFloyd IF's guidance null condition: the empty prompt's embedding (IF was trained
    with it, not with zeros), when a stage is an IF model and guidance is on."""
    from synthaug import diffusion_core as dc
    from synthaug.pipeline.pretrained import empty_prompt_embedding

    for key in _enabled(cfg):
        try:
            m = dc.get_preset(cfg[key].preset).model
        except KeyError:
            continue
        if m.get("kind") == "adm" and m.get("text_dim", None) is not None:
            if float(cfg[key].guidance) != 1.0:
                emb, mask = empty_prompt_embedding(cfg.text, names, workdir=workdir)
                return {"null_text_emb": emb, "null_text_mask": mask}
    return {}


#: The synthetic data set directories ``sample`` wrote: ``out_dir`` or its host directories
#: (the layout is ``synthaug.imagenet_data``'s: ``host_dir``, ``host_range``).
sample_dirs = synthetic_dirs


def sample(
    cfg,
    *,
    progress: bool = True,
    models: dict | None = None,
    text: tuple[np.ndarray, np.ndarray] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    traced_guidance: tuple[str, ...] = (),
    mesh=None,
) -> dict[str, Any]:
    """Generate (or finish generating) the synthetic set a ``sample`` config describes.

    Args:
      cfg: a validated ``sample`` config.
      progress: show a progress bar.
      models: preloaded stage models (see :func:`build_cascade`).
      text: preloaded ``(emb [K, L, D], mask [K, L])`` class embeddings.
      process_index, process_count: this host's place (default: from JAX).
      traced_guidance: see :func:`build_cascade`.
      mesh: the stage's mesh; each batch is split over this process's devices in it
        (default: every local device).

    Returns:
      The summary (also in ``workdir/metrics.json``): examples written, wall time, settings.
    """
    import jax
    from tqdm.auto import tqdm

    from synthaug import imagenet_data as data
    from synthaug import samplers
    from synthaug.pipeline import rundir
    from synthaug.pipeline.runtime import local_batch_sharding
    from synthaug.pipeline.text import class_embeddings

    labels = check_sample(cfg, models=models)
    t0 = time.perf_counter()
    out_root = pathlib.Path(cfg.out_dir or pathlib.Path(cfg.workdir) / "shards")
    workdir = pathlib.Path(cfg.workdir) if cfg.workdir else out_root
    # Directories this run creates are removed again if it fails before its first shard
    # (a checkpoint that cannot be restored, say): a failed start leaves nothing behind.
    created = [p for p in dict.fromkeys((out_root, workdir)) if not p.exists()]
    rundir.claim(out_root, cfg, "sample", what="out_dir")
    try:
        names = class_names(cfg.dataset)
        null = {}
        if text is not None:
            emb, mask = text
        elif _uses_text(cfg):
            emb, mask = class_embeddings(cfg.text, names, workdir=workdir)
            null = _null_condition(cfg, names, workdir)
        else:  # class-conditional models only: the labels are the condition
            emb, mask = np.zeros((len(names), 1, 1), np.float32), np.ones((len(names), 1), bool)
        stages = build_cascade(
            cfg, text_dim=emb.shape[-1], models=models, traced_guidance=traced_guidance
        )

        plan = label_plan(labels, int(cfg.per_class))
        pi = jax.process_index() if process_index is None else process_index
        pc = jax.process_count() if process_count is None else process_count
        start, stop = host_range(len(plan), int(cfg.shard_size), pi, pc)
        out_dir = data.host_dir(out_root, pi, pc)
        settings = {k: cfg[k].to_dict() for k in _enabled(cfg)}
        meta = {
            "num_classes": len(names),
            "dataset": cfg.dataset,
            "classes": [names[i] for i in labels],
            "per_class": int(cfg.per_class),
            "seed": int(cfg.seed),
            "first_index": start,
            "stages": settings,
        }
        if out_dir.is_dir():  # reopened: every complete shard must be what its records say
            try:
                data.verify_shards(out_dir)
            except ValueError as e:
                raise ConfigError(f"cannot resume {str(out_dir)!r}: {e}") from None
        writer = data.SyntheticShardWriter(
            out_dir,
            int(cfg.shard_size),
            metadata=meta,
            image_format=cfg.get("image_format", "png"),
            jpeg_quality=int(cfg.get("jpeg_quality", 95)),
        )
    except BaseException:
        for p in created:
            shutil.rmtree(p, ignore_errors=True)
        raise
    done = writer.resume_index
    key = jax.random.key(int(cfg.seed))
    bsz, shard = int(cfg.batch_size), int(cfg.shard_size)
    sharding, n_local = local_batch_sharding(mesh)
    # Every local device holds the weights (a restored checkpoint sits on one device).
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    stages = [
        dataclasses.replace(st, params=jax.device_put(st.params, replicated)) for st in stages
    ]
    # The batch is padded to a multiple of this process's devices (padding is dropped).
    padded_bsz = -(-bsz // n_local) * n_local
    with_labels = _takes_labels(cfg, models)
    bar = tqdm(
        total=stop - start,
        initial=done,
        desc="sample",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for s0 in range(start + done, stop, shard):
            for b0 in range(s0, min(s0 + shard, stop), bsz):
                b1 = min(b0 + bsz, s0 + shard, stop)
                lab = plan[b0:b1]
                padded = np.concatenate([lab, np.repeat(lab[-1:], padded_bsz - len(lab))])
                cond = {"text_emb": emb[padded], "text_mask": mask[padded]}
                if with_labels:
                    cond["labels"] = padded
                for k, v in null.items():
                    cond[k] = np.broadcast_to(v, (padded_bsz, *v.shape[1:]))
                outs = samplers.cascade_sample(
                    stages, jax.random.fold_in(key, b0), cond=cond, sharding=sharding
                )
                last = np.asarray(outs[-1])[: len(lab)]
                if not np.isfinite(last).all():
                    bad = int((~np.isfinite(last)).reshape(len(lab), -1).any(axis=1).sum())
                    raise NonFiniteSamplesError(
                        f"sample: the batch of examples {b0}..{b1 - 1} has {bad} image(s) with "
                        f"NaN or infinite values; nothing of it was written (the shards "
                        f"before example {s0} are kept; check the checkpoints and "
                        "sampler settings)"
                    )
                images = to_uint8(last)
                writer.write(images, lab)
                bar.update(len(lab))
        manifest = writer.close()
    finally:
        bar.close()
    summary = {
        "stage": "sample",
        "out_dir": str(out_dir),
        "num_examples": manifest["num_examples"],
        "num_shards": manifest["num_shards"],
        "resumed_from": done,
        "image_size": manifest["image_size"],
        "wall_time_s": time.perf_counter() - t0,
        "settings": settings,
    }
    if cfg.workdir:
        w = MetricWriter(workdir, tensorboard=False)
        w.summary(sample=summary)
        w.close()
    return summary
