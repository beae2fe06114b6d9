"""Real data for the stages: the embedded digits or ImageNet (TFDS, folders, TFRecords)."""

from __future__ import annotations

import pathlib

import numpy as np

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir

__all__ = [
    "SOURCES",
    "check_source",
    "count_examples",
    "dataset_of",
    "digits_subset",
    "eval_batches",
    "per_class_indices",
    "real_dataset",
    "to_float",
]

SOURCES = ("imagenet_tfds", "imagenet_folder", "imagenet_tfrecord", "digits")


def dataset_of(source: str) -> str:
    """The label set (``"imagenet"`` or ``"digits"``) of a data source."""
    if source not in SOURCES:
        raise ConfigError(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}")
    return "digits" if source == "digits" else "imagenet"


def check_source(data_cfg) -> None:
    """Raise before any work if the data a ``data`` config names is not there.

    Raises:
      ConfigError: an unknown source.
      MissingPathError: the data directory does not exist.
    """
    dataset_of(data_cfg.source)
    if data_cfg.source != "digits":
        require_dir(data_cfg.data_dir, f"data directory (data.data_dir, source {data_cfg.source})")


def per_class_indices(labels: np.ndarray, per_class: int, *, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of every class (a seeded choice, sorted)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ConfigError(f"class {int(c)} has only {len(idx)} examples, {per_class} requested")
        out.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(out))


def digits_subset(
    split: str, size: int, per_class: int = 0, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The digits ``split`` at ``size``×``size``, optionally ``per_class`` images per class."""
    from synthaug import imagenet_data as data

    images, labels = data.digits_arrays(split, size)
    if per_class:
        idx = per_class_indices(labels, per_class, seed=seed)
        images, labels = images[idx], labels[idx]
    return images, labels


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [-1, 1]."""
    return np.asarray(images, np.float32) / 127.5 - 1.0


def real_dataset(
    data_cfg,
    *,
    split: str | None = None,
    process_index: int = 0,
    process_count: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    decode: bool = True,
):
    """A ``tf.data.Dataset`` of ``(uint8 image, int32 label)`` from a ``data`` config.

    With ``decode=False`` (ImageNet sources only) the images are the encoded file bytes.
    """
    from synthaug import imagenet_data as data

    check_source(data_cfg)
    split = split or data_cfg.split
    kw = dict(shuffle=shuffle, seed=seed, process_index=process_index, process_count=process_count)
    if not decode:
        if data_cfg.source == "digits":
            raise ConfigError("the digits are not stored encoded; pick an ImageNet source")
        kw["decode"] = False
    if data_cfg.source == "digits":
        return data.digits(split, 32)
    if data_cfg.source == "imagenet_tfds":
        return data.from_tfds(data_cfg.data_dir, split, **kw)
    if data_cfg.source == "imagenet_folder":
        return data.from_folders(data_cfg.data_dir, split, **kw)
    pattern = sorted(str(p) for p in pathlib.Path(data_cfg.data_dir).glob(f"{split}*"))
    if not pattern:
        raise FileNotFoundError(f"no TFRecord shards {split}* in {data_cfg.data_dir!r}")
    return data.from_tfrecords(pattern, **kw)


def count_examples(
    data_cfg, *, split: str | None = None, process_index: int = 0, process_count: int = 1
) -> int:
    """Examples of this process's share of a split of an ImageNet source, without decoding.

    Folders: the files listed; TFDS: the split's metadata; TFRecords: the records counted
    (one read of the share's bytes, no decoding). A file that turns out unreadable when
    decoded is counted.
    """

    from synthaug import imagenet_data as data

    check_source(data_cfg)
    split = split or data_cfg.split
    if data_cfg.source == "digits":
        raise ConfigError("the digits are arrays, not a stream; pick an ImageNet source")
    if data_cfg.source == "imagenet_folder":
        paths, _ = data.list_folder_split(data_cfg.data_dir, split)
        return len(paths[process_index::process_count])
    if data_cfg.source == "imagenet_tfds":
        report = data.DataReport()
        data.from_tfds(
            data_cfg.data_dir,
            split,
            process_index=process_index,
            process_count=process_count,
            report=report,
        )
        if report.num_examples is not None:
            return int(report.num_examples)
    ds = real_dataset(
        data_cfg,
        split=split,
        process_index=process_index,
        process_count=process_count,
        decode=False,
    )
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


def eval_batches(
    data_cfg,
    *,
    split: str,
    image_size: int,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
):
    """Evaluation batches of a real split: every example of this host's share once.

    Images are resized (shorter side to ``image_size * 256 / 224``, the paper's 256 -> 224
    protocol at any size) and center cropped to ``image_size``; the last batch may be short.

    Returns:
      A ``tf.data.Dataset`` of ``{"images": uint8 [b, S, S, 3], "labels": int32 [b]}``.
    """
    import tensorflow as tf

    from synthaug import imagenet_data as data

    size = int(image_size)
    resize = max(size, int(round(size * 256 / 224)))

    def prep(image, label):
        image = data.eval_resize_crop(image, resize_size=resize, crop_size=size)
        return {"images": image, "labels": tf.cast(label, tf.int32)}

    ds = real_dataset(
        data_cfg, split=split, process_index=process_index, process_count=process_count
    )
    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(int(batch_size)).prefetch(2)
