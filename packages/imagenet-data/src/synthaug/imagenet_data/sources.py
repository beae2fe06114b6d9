"""ImageNet sources behind one interface: a ``tf.data.Dataset`` of ``(image, label)``.

Every source yields ``(uint8 [H, W, 3] image, int32 label)`` (or the encoded bytes instead
of the image with ``decode=False``, for fused decode-and-crop), fills an optional
:class:`~synthaug.imagenet_data.report.DataReport`, shards by host with ``process_index`` /
``process_count``, and reads in a fixed order with ``deterministic=True``. Corrupt or
truncated images are skipped and recorded in the report by name; they never stop an epoch.
A record file that cannot be read to its end (truncated, corrupt, unreadable) stops the
iteration with an error naming it, so ``examples - skipped == yielded`` for every pass.
"""

from __future__ import annotations

import csv
import os
import pathlib
import re

import numpy as np
import tensorflow as tf

from synthaug.imagenet_data import classes
from synthaug.imagenet_data.decode import AUTOTUNE, checked_records, finish
from synthaug.imagenet_data.report import DataReport

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
GROUND_TRUTH_FILE = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META_FILE = "meta.mat"
KAGGLE_SOLUTION_FILE = "LOC_val_solution.csv"
_WNID_RE = re.compile(r"^n\d{8}$")
_VAL_NAME_RE = re.compile(r"ILSVRC2012_val_(\d{8})\.", re.IGNORECASE)


def _check_host(process_index: int, process_count: int) -> None:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index/process_count: expected 0 <= process_index < process_count, "
            f"got {process_index}/{process_count}"
        )


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_file(name: str, dirs: list[pathlib.Path]) -> pathlib.Path | None:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def read_devkit_meta(path: str | os.PathLike) -> dict[int, str]:
    """ILSVRC2012_ID -> WordNet id, from the devkit's ``data/meta.mat``.

    Args:
      path: the devkit ``meta.mat`` (a MATLAB struct array ``synsets`` with fields
        ``ILSVRC2012_ID`` and ``WNID``).

    Returns:
      A dict over the 1000 leaf classes (IDs 1..1000 in the real devkit).
    """
    from scipy import io as sio

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"devkit meta: {path} does not exist (expected data/meta.mat)")
    mat = sio.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    if "synsets" not in mat:
        raise ValueError(f"devkit meta: {path} has no 'synsets' struct array")
    out = {}
    for s in np.atleast_1d(mat["synsets"]):
        wnid = str(s.WNID)
        if wnid in classes._wnid_index():
            out[int(s.ILSVRC2012_ID)] = wnid
    if not out:
        raise ValueError(f"devkit meta: {path} lists none of the ILSVRC2012 WordNet ids")
    return out


def read_val_labels(
    path: str | os.PathLike, *, devkit_meta: str | os.PathLike | None = None
) -> dict[int, int] | dict[str, int]:
    """Read validation labels from one of the standard ground-truth files.

    Supported: the devkit ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per
    line, image ``i`` on line ``i``; needs the devkit ``meta.mat`` to map IDs to WordNet ids),
    a file with one WordNet id per line (same order), and the Kaggle
    ``LOC_val_solution.csv`` (``ImageId,PredictionString``).

    Args:
      path: the ground-truth file.
      devkit_meta: the devkit ``meta.mat`` (needed for the devkit ground-truth format).

    Returns:
      image number (1-based) -> label, or for the CSV format image id -> label.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"val ground truth: {path} does not exist")
    if path.suffix.lower() == ".csv":
        out_csv: dict[str, int] = {}
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    wnid = row["PredictionString"].split()[0]
                    out_csv[row["ImageId"]] = classes.wnid_to_label(wnid)
                except (KeyError, IndexError) as e:
                    raise ValueError(
                        f"val ground truth: {path} row {row!r} is not ImageId,PredictionString "
                        f"with a WordNet id ({e})"
                    ) from None
        return out_csv
    tokens = path.read_text().split()
    if not tokens:
        raise ValueError(f"val ground truth: {path} is empty")
    if all(_WNID_RE.match(t) for t in tokens):
        return {i + 1: classes.wnid_to_label(t) for i, t in enumerate(tokens)}
    if not all(t.isdigit() for t in tokens):
        raise ValueError(
            f"val ground truth: {path} must hold one ILSVRC2012_ID or one WordNet id per line"
        )
    if devkit_meta is None:
        raise FileNotFoundError(
            f"val ground truth: {path} holds devkit ILSVRC2012_IDs; the devkit meta.mat that "
            "maps them to WordNet ids was not found (pass devkit_meta=...)"
        )
    id_to_wnid = read_devkit_meta(devkit_meta)
    out: dict[int, int] = {}
    for i, t in enumerate(tokens):
        if int(t) not in id_to_wnid:
            raise ValueError(
                f"val ground truth: {path} line {i + 1}: ILSVRC2012_ID {t} is not in {devkit_meta}"
            )
        out[i + 1] = classes.wnid_to_label(id_to_wnid[int(t)])
    return out


def list_folder_split(
    root: str | os.PathLike,
    split: str,
    *,
    val_ground_truth: str | os.PathLike | None = None,
    devkit_meta: str | os.PathLike | None = None,
) -> tuple[list[str], list[int]]:
    """The image files of a raw ILSVRC2012 split and their labels, in sorted file order.

    Layouts: ``root/<split>/<wnid>/*.JPEG`` (train, and val sorted into class folders), or a
    flat ``root/val/*.JPEG`` with a ground-truth file (see :func:`read_val_labels`) found in
    ``val/``, ``root`` or ``root/ILSVRC2012_devkit_t12/data`` unless given.

    Returns:
      (paths, labels), labels in the standard 1000-class order.
    """
    root = pathlib.Path(root)
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"split: {folder} is not a directory (expected {root}/{split}/<wnid>/*.JPEG)"
        )
    class_dirs = _class_dirs(folder)
    paths: list[str] = []
    labels: list[int] = []
    if class_dirs:
        for d in class_dirs:
            try:
                label = classes.wnid_to_label(d.name)
            except classes.UnknownClassError:
                raise classes.UnknownClassError(
                    f"class folder: {d} is not named after an ILSVRC2012 WordNet id"
                ) from None
            for p in _image_files(d):
                paths.append(str(p))
                labels.append(label)
        if not paths:
            raise FileNotFoundError(f"split: no image files under {folder}/<wnid>/")
        return paths, labels
    files = _image_files(folder)
    if not files:
        raise FileNotFoundError(f"split: no image files or class folders in {folder}")
    search = [folder, root, root / "ILSVRC2012_devkit_t12" / "data", root / "data"]
    gt = val_ground_truth
    if gt is None:
        gt = _find_file(GROUND_TRUTH_FILE, search) or _find_file(KAGGLE_SOLUTION_FILE, search)
    if gt is None:
        raise FileNotFoundError(
            f"split: {folder} holds images but no class folders, and no ground-truth file "
            f"({GROUND_TRUTH_FILE} or {KAGGLE_SOLUTION_FILE}) was found in "
            f"{', '.join(map(str, search))}"
        )
    gt = pathlib.Path(gt)
    meta = devkit_meta
    if meta is None:
        meta = _find_file(DEVKIT_META_FILE, [gt.parent] + search)
    table = read_val_labels(gt, devkit_meta=meta)
    for p in files:
        if isinstance(next(iter(table)), str):
            key: int | str = p.stem
        else:
            m = _VAL_NAME_RE.search(p.name)
            if m is None:
                raise ValueError(
                    f"val image: {p.name} is not named ILSVRC2012_val_<8 digits>.JPEG, so the "
                    f"ground truth {gt} cannot label it"
                )
            key = int(m.group(1))
        if key not in table:
            raise KeyError(f"val image: {p.name} has no entry in the ground truth {gt}")
        paths.append(str(p))
        labels.append(table[key])
    return paths, labels


def from_folders(
    root: str | os.PathLike,
    split: str,
    *,
    decode: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    val_ground_truth: str | os.PathLike | None = None,
    devkit_meta: str | os.PathLike | None = None,
    report: DataReport | None = None,
) -> tf.data.Dataset:
    """ImageNet from the raw ILSVRC2012 folder layout.

    Args:
      root: the directory holding ``train/`` and ``val/`` (see :func:`list_folder_split`).
      split: the sub-directory to read, e.g. ``"train"`` or ``"val"``.
      decode: yield decoded uint8 images; False yields the encoded bytes.
      shuffle: shuffle the file order (each epoch, from ``seed``).
      seed: the shuffle seed.
      deterministic: keep the element order fixed (given the seed).
      process_index: this host's index; hosts read disjoint interleaved shares of the files.
      process_count: the number of hosts.
      val_ground_truth: the validation ground-truth file, if not found automatically.
      devkit_meta: the devkit ``meta.mat``, if not found automatically.
      report: filled with the metadata and, while iterating, the skipped files.

    Returns:
      A ``tf.data.Dataset`` of ``(image uint8 [H, W, 3], label int32)``.
    """
    _check_host(process_index, process_count)
    paths, labels = list_folder_split(
        root, split, val_ground_truth=val_ground_truth, devkit_meta=devkit_meta
    )
    paths, labels = paths[process_index::process_count], labels[process_index::process_count]
    if report is not None:
        report.source, report.split, report.location = "folders", split, str(root)
        report.num_examples, report.files = len(paths), len(paths)
        report.num_classes = classes.NUM_CLASSES
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))
    )
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda f, y: (tf.io.read_file(f), y, f),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    return finish(ds, report=report, decode=decode, deterministic=deterministic)


def from_tfrecords(
    pattern: str | os.PathLike | list[str],
    *,
    decode: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    image_key: str = "image/encoded",
    label_key: str = "image/class/label",
    filename_key: str = "image/filename",
    label_offset: int = 0,
    num_classes: int = classes.NUM_CLASSES,
    cycle_length: int = 16,
    report: DataReport | None = None,
) -> tf.data.Dataset:
    """ImageNet (or any labelled images) from TFRecord shards of ``tf.train.Example``.

    Args:
      pattern: a glob pattern (or list of patterns) of the shard files.
      decode: yield decoded uint8 images; False yields the encoded bytes.
      shuffle: shuffle the shard order and interleave from ``seed``.
      seed: the shuffle seed.
      deterministic: keep the element order fixed (given the seed).
      process_index: this host's index: hosts read disjoint shards (or, with fewer shards
        than hosts, disjoint records).
      process_count: the number of hosts.
      image_key: the feature holding the encoded image.
      label_key: the int64 feature holding the label.
      filename_key: an optional bytes feature naming the image (used in the skip report).
      label_offset: added to the stored label; ``-1`` for the 1-based labels of the
        Inception/TPU ``build_imagenet_data.py`` shards.
      num_classes: labels outside ``[0, num_classes)`` after the offset are skipped and
        recorded.
      cycle_length: shards read at once.
      report: filled with the metadata and, while iterating, the skipped records.

    Returns:
      A ``tf.data.Dataset`` of ``(image uint8 [H, W, 3], label int32)``.
    """
    _check_host(process_index, process_count)
    patterns = [pattern] if isinstance(pattern, str | os.PathLike) else list(pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(os.fspath(p))})
    if not files:
        raise FileNotFoundError(f"pattern: no TFRecord files match {pattern!r}")
    shard_records = len(files) < process_count
    if not shard_records:
        files = files[process_index::process_count]
    if report is not None:
        report.source, report.location, report.files = "tfrecords", str(pattern), len(files)
        report.num_classes = num_classes
    features = {
        image_key: tf.io.FixedLenFeature([], tf.string),
        label_key: tf.io.FixedLenFeature([], tf.int64),
        filename_key: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }

    def parse(record, path, index):
        ex = tf.io.parse_single_example(record, features)
        name = ex[filename_key]
        fallback = tf.strings.join([path, "#", tf.strings.as_string(index)])
        name = tf.where(tf.strings.length(name) > 0, name, fallback)
        return ex[image_key], ex[label_key] + label_offset, name

    read, ds = checked_records(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda path, size, n: read(path, size, n).map(lambda r, i: (r, path, i)),
        cycle_length=max(1, min(cycle_length, len(files))),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if shard_records:
        ds = ds.shard(process_count, process_index)
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    hint = f" (label_offset={label_offset})"
    return finish(
        ds,
        report=report,
        decode=decode,
        deterministic=deterministic,
        num_classes=num_classes,
        label_hint=hint,
    )


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "from_tfds needs tensorflow-datasets: pip install 'synthaug-imagenet-data[tfds]'"
        ) from e
    return tfds


_TFDS_SPLITS = {"val": "validation", "valid": "validation"}


def from_tfds(
    data_dir: str | os.PathLike,
    split: str,
    *,
    manual_dir: str | os.PathLike | None = None,
    name: str = "imagenet2012",
    decode: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    report: DataReport | None = None,
) -> tf.data.Dataset:
    """ImageNet from TensorFlow Datasets (``imagenet2012``) in a local ``data_dir``.

    If the data set is not prepared in ``data_dir`` and ``manual_dir`` holds
    ``ILSVRC2012_img_train.tar`` / ``ILSVRC2012_img_val.tar``, it is prepared first (without
    network access). Needs the ``tfds`` extra (``tensorflow-datasets``).

    Args:
      data_dir: the TFDS data directory.
      split: a TFDS split string (``"train"``, ``"validation"`` or ``"val"``, ``"train[:1%]"``).
      manual_dir: where the ImageNet tar files are, to prepare the data set.
      name: the TFDS builder name (e.g. ``"imagenet2012:5.1.0"``).
      decode: yield decoded uint8 images; False yields the encoded bytes.
      shuffle: shuffle the shard order (from ``seed``).
      seed: the shuffle seed.
      deterministic: keep the element order fixed (given the seed).
      process_index: this host's index; hosts read disjoint even sub-splits.
      process_count: the number of hosts.
      report: filled with the metadata and, while iterating, the skipped records.

    Returns:
      A ``tf.data.Dataset`` of ``(image uint8 [H, W, 3], label int32)``.
    """
    _check_host(process_index, process_count)
    tfds = _import_tfds()
    split = _TFDS_SPLITS.get(split, split)
    builder = tfds.builder(name, data_dir=os.fspath(data_dir))
    if not builder.is_prepared():
        if manual_dir is None:
            raise FileNotFoundError(
                f"data_dir: {name} is not prepared in {data_dir}; pass manual_dir= with the "
                "ILSVRC2012 tar files to prepare it"
            )
        config = tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir), try_download_gcs=False
        )
        builder.download_and_prepare(download_config=config)
    host_split = split
    if process_count > 1:
        host_split = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
    read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=16)
    ds = builder.as_dataset(
        split=host_split,
        shuffle_files=shuffle,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=read_config,
    )
    n_classes = builder.info.features["label"].num_classes
    if report is not None:
        report.source, report.split, report.location = "tfds", split, str(data_dir)
        report.num_classes = n_classes
        try:
            report.num_examples = int(builder.info.splits[host_split].num_examples)
        except (KeyError, ValueError, TypeError):
            report.num_examples = None
    has_name = "file_name" in builder.info.features

    def unpack(ex):
        nm = ex["file_name"] if has_name else tf.constant("")
        return ex["image"], ex["label"], nm

    ds = ds.map(unpack, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return finish(ds, report=report, decode=decode, deterministic=deterministic)
