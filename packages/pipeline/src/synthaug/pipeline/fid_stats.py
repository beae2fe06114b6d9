"""``synthaug fid-stats``: FID reference statistics of a real ImageNet split, ADM-style.

The statistics published FIDs of ImageNet models compare against are those of guided-diffusion's
(ADM's) reference batches: every image decoded with PIL, converted to RGB and brought to
``image_size`` by ``center_crop_arr`` (while the shorter side is at least twice the size, halve
the image with a box filter; then resize bicubically so that the shorter side is
``image_size``, rounding the other side; then center crop), then fed as uint8 to the FID
Inception-v3. The output is ADM's ``.npz``: ``mu`` / ``sigma`` (pool3, 2048-d) and ``mu_s`` /
``sigma_s`` (the first 7 channels of ``mixed_6/conv``, i.e. Mixed_6d's 1x1 branch, 17x17x7 =
2023-d), float64, covariances with ``ddof=1`` as ``numpy.cov``: ADM's ``evaluator.py`` reads
all four keys of a file that holds ``mu``.

The split streams through imagenet-data's sources (TFDS, folders, TFRecords) as encoded bytes;
PIL decodes and resizes in a thread pool. Each process reads its share of the split and keeps
its own running sums (count, mean and centred second moments in float64); every
``checkpoint_every`` batches they are written atomically to
``workdir/fid_stats/process-PPPPP-of-NNNNN.npz``, after the state of the process's reader
(``workdir/input_state/``, :class:`~synthaug.pipeline.resume.CheckpointedStream`), so a killed
run resumes where its last checkpoint was without reading the images it had counted again. When every
process is done, process 0 merges the per-process sums exactly (Chan et al.'s parallel update)
and writes ``out``.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import pathlib
import time
from typing import Any

import ml_collections
import numpy as np

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import atomic_path, require_file

__all__ = [
    "SPATIAL_CHANNELS",
    "center_crop_arr",
    "check_fid_stats",
    "fid_stats",
    "fid_stats_schema",
    "load_inception",
    "make_adm_feature_fn",
]

SPATIAL_CHANNELS = 7  # ADM: mixed_6/conv[..., :7]
_STATE_DIR = "fid_stats"


def fid_stats_schema() -> ml_collections.ConfigDict:
    """Schema of ``synthaug fid-stats``: ADM reference statistics of a real ImageNet split."""
    c = ml_collections.ConfigDict()
    c.stage = "fid-stats"
    # Progress checkpoints (per process) and metrics.json.
    c.workdir = ""
    # The statistics file written (ADM's .npz: mu, sigma, mu_s, sigma_s).
    c.out = ""
    c.data = ml_collections.ConfigDict(
        {
            # "imagenet_tfds", "imagenet_folder" or "imagenet_tfrecord".
            "source": "imagenet_tfds",
            "data_dir": "",
            "split": "train",
        }
    )
    # ADM's center_crop_arr size: 64 or 256 for the paper's tables.
    c.image_size = 256
    # Images counted (0 = the whole split); with N processes each takes its share.
    c.num_images = 0
    c.batch_size = 100
    # FID Inception weights: pytorch-fid .pth, or an .npz holding the same state dict.
    c.inception_checkpoint = ""
    # Also the sFID statistics mu_s / sigma_s (ADM's evaluator expects them next to mu).
    c.spatial = True
    # Write the running sums every this many batches.
    c.checkpoint_every = 50
    # PIL decoding threads.
    c.workers = 8
    c.hardware = ""
    # The FID the paper reports against these statistics.
    c.paper = ml_collections.ConfigDict({"fid": -1.0, "note": ""})
    return c


def center_crop_arr(pil_image, image_size: int) -> np.ndarray:
    """guided-diffusion's ``image_datasets.center_crop_arr``: box halving, bicubic, center crop.

    Args:
      pil_image: an RGB ``PIL.Image``.
      image_size: the output side.

    Returns:
      uint8 ``[image_size, image_size, 3]``.
    """
    from PIL import Image

    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(
        tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC
    )
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def _decode_crop(encoded: bytes, image_size: int) -> np.ndarray | None:
    """PIL decode, RGB, :func:`center_crop_arr`; None for a file PIL cannot read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(encoded)) as im:
            im.load()
            rgb = im.convert("RGB")
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return None
    return center_crop_arr(rgb, image_size)


def load_inception(path: str | os.PathLike) -> dict[str, Any]:
    """FID Inception parameters from pytorch-fid's ``.pth`` or an ``.npz`` of that state dict."""
    from synthaug import metrics as mt

    path = require_file(path, "Inception weights (inception_checkpoint)")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return mt.load_fid_inception({k: f[k] for k in f.files})
    return mt.load_fid_inception(path)


def make_adm_feature_fn(params: dict[str, Any], *, batch_size: int, spatial: bool = True):
    """``fn(uint8 [batch_size, H, W, 3]) -> (pool3 [B, 2048], spatial [B, 2023] or None)``.

    ``spatial`` is ADM's sFID feature: the ReLU output of Mixed_6d's 1x1 branch (TF graph
    ``mixed_6/conv``), first 7 channels, flattened in height, width, channel order.
    """
    import jax
    import jax.numpy as jnp

    from synthaug import metrics as mt

    model = mt.FIDInception(logits_bias=False)
    variables = jax.device_put({"params": params})
    conv = params["Mixed_6d"]["branch1x1"]
    k_s = jax.device_put(np.asarray(conv["kernel"])[0, 0, :, :SPATIAL_CHANNELS])
    b_s = jax.device_put(np.asarray(conv["bias"])[:SPATIAL_CHANNELS])

    @jax.jit
    def forward(variables, k_s, b_s, images):
        x = images.astype(jnp.float32) / 255.0
        if not spatial:
            return model.apply(variables, x)[0], None
        (pool3, _), state = model.apply(
            variables,
            x,
            capture_intermediates=lambda mdl, _: mdl.name == "Mixed_6c",
            mutable=["intermediates"],
        )
        h = state["intermediates"]["Mixed_6c"]["__call__"][0]  # the input of Mixed_6d
        s = jnp.einsum("nhwc,cd->nhwd", h, k_s, precision=jax.lax.Precision.HIGHEST)
        s = jax.nn.relu(s + b_s)
        return pool3, s.reshape(s.shape[0], -1)

    def fn(images):
        if images.shape[0] != batch_size:
            raise ValueError(f"expected {batch_size} images, got {images.shape[0]}")
        return forward(variables, k_s, b_s, images)

    return fn


def check_fid_stats(cfg) -> None:
    """Every input of a fid-stats config exists (raises before anything is written)."""
    from synthaug.pipeline.data import check_source

    if not cfg.workdir:
        raise ConfigError("fid-stats needs config.workdir (where progress checkpoints go)")
    if not cfg.out:
        raise ConfigError("fid-stats needs config.out (the .npz statistics file to write)")
    if cfg.data.source == "digits":
        raise ConfigError("fid-stats reads an ImageNet source (imagenet_tfds, _folder, _tfrecord)")
    check_source(cfg.data)
    require_file(cfg.inception_checkpoint, "Inception weights (inception_checkpoint)")
    for key in ("image_size", "batch_size", "checkpoint_every", "workers"):
        if int(cfg[key]) < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if int(cfg.num_images) < 0:
        raise ConfigError(f"num_images must be >= 0 (0 = all), got {cfg.num_images}")


def _fingerprint(cfg, process_count: int) -> str:
    keys = {
        "data": cfg.data.to_dict(),
        "image_size": int(cfg.image_size),
        "num_images": int(cfg.num_images),
        "batch_size": int(cfg.batch_size),
        "spatial": bool(cfg.spatial),
        "inception": os.path.abspath(cfg.inception_checkpoint),
        "process_count": int(process_count),
    }
    return json.dumps(keys, sort_keys=True)


def _part_path(workdir: pathlib.Path, pi: int, pc: int) -> pathlib.Path:
    return workdir / _STATE_DIR / f"process-{pi:05d}-of-{pc:05d}.npz"


def _save_part(path, fingerprint, consumed, skipped, done, pool, spatial) -> None:
    arrays: dict[str, Any] = {
        "fingerprint": np.asarray(fingerprint),
        "consumed": np.asarray(consumed, np.int64),
        "skipped": np.asarray(skipped, np.int64),
        "done": np.asarray(done, np.bool_),
    }
    for prefix, stats in (("pool", pool), ("spatial", spatial)):
        if stats is not None and stats.dim is not None:
            for k, v in stats.state_dict().items():
                arrays[f"{prefix}_{k}"] = v
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load_part(path, fingerprint: str | None):
    from synthaug import metrics as mt

    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    if fingerprint is not None and str(data["fingerprint"]) != fingerprint:
        raise ConfigError(
            f"{str(path)!r} holds the progress of a fid-stats run with other settings "
            f"({data['fingerprint']}); use another workdir or remove it"
        )
    stats = {}
    for prefix in ("pool", "spatial"):
        if f"{prefix}_count" in data:
            stats[prefix] = mt.RunningStats.from_state_dict(
                {k: data[f"{prefix}_{k}"] for k in ("count", "mean", "m2")}
            )
        else:
            stats[prefix] = mt.RunningStats()
    return int(data["consumed"]), int(data["skipped"]), bool(data["done"]), stats


def fid_stats(cfg, *, progress: bool = True) -> dict[str, Any]:
    """Compute (or finish computing) the reference statistics a ``fid-stats`` config describes.

    Returns:
      The summary also written to ``workdir/metrics.json``: images counted, files skipped
      (unreadable), the output path, wall time.
    """
    import jax
    from tqdm.auto import tqdm

    from synthaug import metrics as mt
    from synthaug.pipeline.data import real_dataset
    from synthaug.pipeline.runtime import barrier
    from synthaug.pipeline.writer import MetricWriter

    check_fid_stats(cfg)
    t0 = time.perf_counter()
    workdir = pathlib.Path(cfg.workdir)
    pi, pc = jax.process_index(), jax.process_count()
    fp = _fingerprint(cfg, pc)
    part = _part_path(workdir, pi, pc)
    spatial_on = bool(cfg.spatial)
    size, bs = int(cfg.image_size), int(cfg.batch_size)
    consumed = skipped = 0
    done = False
    pool, spatial = mt.RunningStats(), (mt.RunningStats() if spatial_on else None)
    if part.is_file():
        consumed, skipped, done, st = _load_part(part, fp)
        pool = st["pool"]
        spatial = st["spatial"] if spatial_on else None
    resumed_from = consumed
    input_report = None
    limit = 0
    if int(cfg.num_images):
        n = int(cfg.num_images)
        limit = n // pc + (1 if pi < n % pc else 0)
    if not done:
        params = load_inception(cfg.inception_checkpoint)
        feature_fn = make_adm_feature_fn(params, batch_size=bs, spatial=spatial_on)
        from synthaug.pipeline.resume import INPUT_STATE_DIR, CheckpointedStream

        def make_dataset():
            ds = real_dataset(cfg.data, decode=False, process_index=pi, process_count=pc)
            ds = ds.map(lambda encoded, label: encoded)
            if limit:
                ds = ds.take(limit)
            return ds.batch(bs).prefetch(2)

        every = int(cfg.checkpoint_every)
        # The reader's state is saved with the sums, so a resumed run reads on from there
        # instead of reading the files it had counted again.
        stream = CheckpointedStream(
            make_dataset,
            workdir / INPUT_STATE_DIR / f"process-{pi:05d}-of-{pc:05d}",
            save_every=every,
            keep=2,
            convert=lambda b: b.numpy(),
        )
        bar = tqdm(
            total=limit or None,
            initial=consumed,
            desc=f"fid-stats {cfg.data.split} {size}",
            unit="img",
            disable=not progress,
            dynamic_ncols=True,
        )
        workers = int(cfg.workers)
        i = -(-consumed // bs)  # batches counted (only the last one may be short)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool_ex:
            try:
                while True:
                    try:
                        encoded = stream(i)
                    except StopIteration:
                        break
                    i += 1
                    crops = list(pool_ex.map(lambda b: _decode_crop(b, size), encoded))
                    good = [c for c in crops if c is not None]
                    skipped += len(crops) - len(good)
                    if good:
                        x = np.stack(good)
                        n = len(x)
                        if n < bs:
                            x = np.concatenate([x, np.zeros((bs - n, *x.shape[1:]), np.uint8)])
                        feats, sfeats = feature_fn(x)
                        pool.update(np.asarray(feats, np.float64)[:n])
                        if spatial is not None:
                            spatial.update(np.asarray(sfeats, np.float64)[:n])
                    consumed += len(crops)
                    bar.update(len(crops))
                    if i % every == 0:
                        _save_part(part, fp, consumed, skipped, False, pool, spatial)
            finally:
                bar.close()
        input_report = stream.report()
        if pool.dim is None:  # this process saw no image: record the dimension
            pool = mt.RunningStats(2048)
            pool.update(np.zeros((0, 2048)))
            if spatial is not None:
                spatial.update(np.zeros((0, SPATIAL_CHANNELS * 17 * 17)))
        _save_part(part, fp, consumed, skipped, True, pool, spatial)
    barrier("synthaug-fid-stats-done")
    summary: dict[str, Any] = {"stage": "fid-stats", "out": str(cfg.out)}
    if pi == 0:
        total = mt.RunningStats()
        total_s = mt.RunningStats() if spatial_on else None
        n_consumed = n_skipped = 0
        for p in range(pc):
            c, s, d, st = _load_part(_part_path(workdir, p, pc), fp)
            if not d:
                raise ConfigError(f"process {p} of {pc} has not finished its share")
            total.merge(st["pool"])
            if total_s is not None:
                total_s.merge(st["spatial"])
            n_consumed, n_skipped = n_consumed + c, n_skipped + s
        if total.count < 2:
            raise ConfigError(
                f"{cfg.data.source} split {cfg.data.split!r} in {cfg.data.data_dir!r}: "
                f"{total.count} readable images; statistics need at least 2"
            )
        kw = {}
        if total_s is not None:
            kw = {"mu_s": total_s.mean, "sigma_s": total_s.cov}
        mt.save_reference_npz(cfg.out, mu=total.mean, sigma=total.cov, **kw)
        summary.update(
            num_images=int(total.count),
            skipped=int(n_skipped),
            read=int(n_consumed),
            image_size=size,
            spatial=spatial_on,
            resumed_from=int(resumed_from),
            input=input_report,
            processes=pc,
            wall_time_s=time.perf_counter() - t0,
        )
        w = MetricWriter(workdir, tensorboard=False)
        w.summary(fid_stats=summary)
        w.close()
    barrier("synthaug-fid-stats-written")
    return summary
