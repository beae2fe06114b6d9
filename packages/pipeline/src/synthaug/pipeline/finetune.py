"""``synthaug finetune``: train or fine-tune one diffusion stage (base or super-resolution)."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from synthaug.pipeline.classes import class_names
from synthaug.pipeline.data import check_source, dataset_of, digits_subset, to_float
from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir
from synthaug.pipeline.models import check_text_dim, diffusion_config, write_model_info
from synthaug.pipeline.text import class_embeddings
from synthaug.pipeline.writer import MetricWriter

__all__ = ["check_finetune", "finetune", "make_batches"]


def check_finetune(cfg) -> None:
    """Every input of a finetune config exists (raises before anything is written)."""
    if not cfg.workdir:
        raise ConfigError("finetune needs config.workdir (where checkpoints go)")
    check_source(cfg.data)
    if cfg.init_checkpoint:
        require_dir(cfg.init_checkpoint, "initial checkpoint (init_checkpoint)")
    from synthaug import diffusion_core as dc

    try:  # the SR conditioning's order and resize method
        dc.lowres_settings(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for key in ("num_steps", "batch_size", "save_every", "log_every", "keep", "grad_accum_steps"):
        if key in cfg.train and int(cfg.train[key]) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {cfg.train[key]}")
    accum = int(cfg.train.get("grad_accum_steps", 1))
    if int(cfg.train.batch_size) % accum:
        raise ConfigError(
            f"train.grad_accum_steps {accum} must divide train.batch_size "
            f"{cfg.train.batch_size} (micro-batches of equal size)"
        )
    if cfg.text.checkpoint and not pathlib.Path(cfg.text.checkpoint).exists():
        require_dir(cfg.text.checkpoint, "text encoder checkpoint (text.checkpoint)")
    if cfg.text.tokenizer and not pathlib.Path(cfg.text.tokenizer).is_file():
        require_dir(cfg.text.tokenizer, "SentencePiece tokenizer (text.tokenizer)")


def make_batches(
    images: np.ndarray,
    labels: np.ndarray,
    emb: np.ndarray,
    mask: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    lowres: np.ndarray | None = None,
) -> Callable[[int], dict[str, Any]]:
    """``batch_at(step)``: a seeded reshuffle every epoch, so a resumed run sees the same data.

    Args:
      images: uint8 ``[N, H, W, 3]`` training images.
      labels: int ``[N]``.
      emb, mask: per-class prompt embeddings ``[K, L, D]`` and masks ``[K, L]``.
      batch_size: images per step.
      seed: the shuffle seed.
      lowres: uint8 ``[N, h, w, 3]`` low-resolution inputs (super-resolution training).
    """
    n = len(labels)
    if n < batch_size:
        raise ConfigError(f"train.batch_size {batch_size} exceeds the {n} training images")
    per_epoch = n // batch_size
    hi = to_float(images)
    lo = None if lowres is None else to_float(lowres)

    def batch_at(step: int) -> dict[str, Any]:
        epoch, k = divmod(int(step), per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        idx = perm[k * batch_size : (k + 1) * batch_size]
        lab = labels[idx]
        # labels: the condition of a class-conditional model (ADM); a text model ignores them
        batch = {"image": hi[idx], "text_emb": emb[lab], "text_mask": mask[lab], "labels": lab}
        if lo is not None:
            batch["lowres"] = lo[idx]
        return batch

    return batch_at


def _imagenet_batches(cfg, dcfg, workdir):
    """``batch_at(step)`` over this process's ImageNet batches through tf.data, with
    ``labels`` (the text embeddings are looked up on the device); resumable without replay.

    Epoch ``e`` is one pass over this process's share of the split, in an order drawn from
    ``(train.seed, e)``: ``steps_per_epoch = examples // per-process batch`` batches (images
    skipped as unreadable are made up from a second order of the same share). Its tf.data
    iterator state is saved under ``workdir/input_state/`` at every model checkpoint step
    (:class:`~synthaug.pipeline.resume.CheckpointedStream`, as train-classifier streams), so a
    resumed run restores its input position instead of reading the batches it trained on.
    """
    import tensorflow as tf

    from synthaug import imagenet_data as data
    from synthaug.pipeline.data import real_dataset
    from synthaug.pipeline.resume import INPUT_STATE_DIR, CheckpointedStream, stream_layout
    from synthaug.tpu_launch import process_count, process_index

    size = int(dcfg.model.image_size)
    low = int(dcfg.diffusion.lowres_size)
    pi, pc = process_index(), process_count()
    per_host = int(dcfg.train.batch_size) // max(pc, 1)
    seed = int(dcfg.train.seed)
    directory = pathlib.Path(workdir) / INPUT_STATE_DIR / f"process-{pi:05d}-of-{pc:05d}"
    spe = stream_layout(directory, cfg.data, per_host, process_index=pi, process_count=pc)
    if spe < 1:
        raise ConfigError(
            f"train.batch_size {dcfg.train.batch_size}: process {pi} of {pc} has fewer than "
            f"{per_host} images of data.split {cfg.data.split!r} in {cfg.data.data_dir!r}"
        )

    def prep(image, label):
        hi = data.diffusion_downsample(image, size=size)
        out = {"image": data.to_float_range(hi), "label": label}
        if low:
            out["lowres"] = data.to_float_range(data.diffusion_downsample(hi, size=low))
        return out

    def epoch_dataset(epoch: int):
        def order(k: int):
            ep_seed = int(np.random.SeedSequence([seed, epoch, k]).generate_state(1)[0])
            return real_dataset(
                cfg.data, shuffle=True, seed=ep_seed, process_index=pi, process_count=pc
            )

        # Each pipeline is read once from its own seed (a restored iterator reproduces a
        # first pass, not a reshuffled later one); the second only makes up skipped images.
        ds = order(0).concatenate(order(1)).take(spe * per_host)
        ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(per_host, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def convert(element):
        b = {k: v.numpy() for k, v in element.items()}
        b["labels"] = b.pop("label")
        return b

    return CheckpointedStream(
        epoch_dataset,
        directory,
        save_every=int(dcfg.train.save_every),
        keep=int(dcfg.train.keep) + 1,
        convert=convert,
        steps_per_epoch=spe,
    )


def finetune(
    cfg, *, progress: bool = True, writer: MetricWriter | None = None, mesh=None
) -> dict[str, Any]:
    """Train one diffusion stage as a ``finetune`` config describes; resumes if interrupted.

    The config's ``model``, ``diffusion``, ``optimizer`` and ``train`` sections are
    diffusion-core's own config, passed to ``diffusion_core.train`` as they are.

    Writes ``workdir/checkpoints/`` (orbax, every ``train.save_every`` steps and at the
    end), ``workdir/model.json`` (the preset and the model, read by ``sample``),
    ``workdir/metrics.json`` and TensorBoard events under ``workdir/tb``.

    Args:
      cfg: a validated ``finetune`` config.
      progress: show a progress bar.
      writer: a metric writer (default: one in ``cfg.workdir``).
      mesh: the device mesh (``synthaug.pipeline.runtime.stage_runtime``); each process
        feeds its part of every global batch and ``sharding.rules`` place the parameters.

    Returns:
      The summary written to ``metrics.json`` (final loss, steps, wall time).
    """
    return train_stage(cfg, progress=progress, writer=writer, mesh=mesh)[0]


class _NoWriter:
    """The metric writer of processes other than 0 (process 0 writes the files)."""

    def scalars(self, *args, **kwargs) -> None:
        pass

    summary = flush = close = scalars


def _process_part(data, mesh):
    """This process's rows of every global batch ``data(step)`` (all of them when alone)."""
    from synthaug import tpu_launch as tl

    index, count = tl.host_shard_info(mesh)
    if count == 1:
        return data

    def part(step: int) -> dict[str, Any]:
        batch = data(step)
        n = len(next(iter(batch.values())))
        if n % count:
            raise ConfigError(
                f"train.batch_size {n} must be divisible by the {count} processes' batch shards"
            )
        rows = slice(index * n // count, (index + 1) * n // count)
        return {k: v[rows] for k, v in batch.items()}

    return part


def train_stage(cfg, *, progress: bool = True, writer: MetricWriter | None = None, mesh=None):
    """:func:`finetune`, also returning the trained model: ``(summary, (diffusion config,
    model, EMA params))`` — the EMA parameters are those the checkpoint holds, so a caller
    that samples next (the demo) need not read them back."""
    import jax
    from tqdm.auto import tqdm

    from synthaug import diffusion_core as dc
    from synthaug import tpu_launch as tl
    from synthaug.pipeline import rundir
    from synthaug.pipeline.runtime import stage_rules

    check_finetune(cfg)
    rules = stage_rules(cfg)
    primary = jax.process_index() == 0
    t0 = time.perf_counter()
    workdir = rundir.claim(cfg.workdir, cfg, "finetune")
    dataset = dataset_of(cfg.data.source)
    names = class_names(dataset)
    dcfg = diffusion_config(cfg)
    if dcfg.model.get("text_dim", None) is None and dcfg.model.get("num_classes", None):
        # A class-conditional model without text (ADM): the labels are the condition, no
        # text encoder is loaded.
        emb, mask = np.zeros((len(names), 1, 1), np.float32), np.ones((len(names), 1), bool)
    else:
        emb, mask = class_embeddings(cfg.text, names, workdir=workdir)
    check_text_dim(dcfg, emb.shape[-1], "finetune config")
    seed = int(dcfg.train.seed)
    batch_size = int(dcfg.train.batch_size)
    model = dc.make_model(dcfg)
    is_sr = dc.is_super_resolution(dcfg)
    if dataset == "digits":
        size = int(dcfg.model.image_size)
        images, labels = digits_subset(cfg.data.split, size, cfg.data.per_class, seed=seed)
        lowres = None
        if is_sr:
            lowres, _ = digits_subset(
                cfg.data.split, int(dcfg.diffusion.lowres_size), cfg.data.per_class, seed=seed
            )
        data = make_batches(
            images, labels, emb, mask, batch_size=batch_size, seed=seed, lowres=lowres
        )
        if mesh is not None:
            data = _process_part(data, mesh)
        text_table = None
    else:
        data = _imagenet_batches(cfg, dcfg, workdir)
        # Each example's prompt embedding is looked up on the device from its label.
        text_table = {"text_emb": emb, "text_mask": mask}

    init_state = None
    if cfg.init_checkpoint:
        size, low = int(dcfg.model.image_size), int(dcfg.diffusion.lowres_size)
        example = {
            "image": np.zeros((1, size, size, 3), np.float32),
            "text_emb": emb[:1],
            "text_mask": mask[:1],
        }
        if is_sr:
            example["lowres"] = np.zeros((1, low, low, 3), np.float32)
        fresh = dc.create_train_state(jax.random.key(seed), model, dcfg, example)
        from synthaug.pipeline.pretrained import resolve_checkpoint_dir

        try:  # strict: every parameter of the model from the checkpoint, nothing left over
            init_state, merge_report = dc.init_from_pretrained(
                fresh,
                dc.load_params(resolve_checkpoint_dir(cfg.init_checkpoint)),
                dcfg,
                strict=True,
            )
        except ValueError as e:
            raise ConfigError(f"init_checkpoint {cfg.init_checkpoint!r}: {e}") from None

    own_writer = writer is None
    writer = (writer or MetricWriter(workdir)) if primary else _NoWriter()
    bar = tqdm(
        total=int(dcfg.train.num_steps),
        desc=f"finetune {cfg.preset}",
        disable=not (progress and primary),
        unit="step",
        dynamic_ncols=True,
    )
    last = {"step": 0}

    def callback(step, metrics, state):
        bar.update(step - max(bar.n, 0))
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        writer.scalars(step, {f"train/{k}": v for k, v in metrics.items() if k != "step"})
        last.update(metrics)

    try:
        state, history = dc.train(
            model,
            dcfg,
            data,
            checkpoint_dir=str(workdir / "checkpoints"),
            init_state=init_state,
            callback=callback,
            mesh=mesh,
            param_specs=(lambda p: tl.partition_specs(p, rules, mesh=mesh)) if rules else None,
            text_table=text_table,
        )
    finally:
        bar.close()
    # The model record only once a checkpoint of this model exists (dc.train saved it).
    if primary:
        write_model_info(workdir, cfg.preset, dcfg)
    summary = {
        "stage": "finetune",
        "preset": cfg.preset,
        "steps": int(state.step),
        "final_loss": last.get("loss"),
        "wall_time_s": time.perf_counter() - t0,
    }
    if hasattr(data, "report"):  # a streamed input: how it was positioned on resume
        summary["input"] = data.report()
    writer.summary(finetune=summary)
    if own_writer:
        writer.close()
    else:
        writer.flush()
    return summary, (dcfg, model, state.ema_params)
