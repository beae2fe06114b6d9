"""Synthetic data sets: sharded TFRecords of generated images with a JSON manifest.

Layout of an output directory::

    synthetic-00000.tfrecord        complete shards of ``shard_size`` examples each
    synthetic-00000.tfrecord.json   per-shard counts (written before the shard is renamed)
    ...
    writer.json                     shard_size, image format and metadata (fixed at creation)
    manifest.json                   written by ``close()``: counts per class, settings, seed

Written by several hosts, a data set is a root directory holding one such directory per host,
``host-PPPPP-of-NNNNN/`` (:func:`host_dir`); host ``p`` writes the contiguous, shard-aligned
range :func:`host_range` of the examples. :func:`synthetic_dirs` lists the directories of a
data set, and :func:`read_synthetic` reads either form.

Each shard is written under a temporary name and renamed when complete, so a killed
generation leaves only complete shards. Reopening the directory continues after the last
complete shard; :attr:`SyntheticShardWriter.next_index` is the index of the first example
that still has to be generated, so nothing is duplicated or lost.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from synthaug.imagenet_data import records
from synthaug.imagenet_data.report import DataReport
from synthaug.io import atomic_path, write_text

if TYPE_CHECKING:
    import tensorflow as tf

SHARD_PREFIX = "synthetic-"
SHARD_SUFFIX = ".tfrecord"
MANIFEST = "manifest.json"
WRITER_STATE = "writer.json"
HOST_DIR = "host-{index:05d}-of-{count:05d}"
HOST_GLOB = "host-*-of-*"
#: Default examples held by the shuffle buffer of :func:`read_synthetic` (encoded records,
#: about 100-150 KB each for PNG at 256x256: 10,000 hold about 1.2 GB).
DEFAULT_SHUFFLE_BUFFER = 10_000
_SHARD_RE = re.compile(rf"^{SHARD_PREFIX}(\d{{5,}}){re.escape(SHARD_SUFFIX)}$")


def _shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}{SHARD_SUFFIX}"


def host_dir(root: str | os.PathLike, process_index: int, process_count: int) -> pathlib.Path:
    """The directory host ``process_index`` of ``process_count`` writes its shards to:
    ``root`` itself on one host, else ``root/host-PPPPP-of-NNNNN``."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index/process_count: expected 0 <= process_index < process_count, "
            f"got {process_index}/{process_count}"
        )
    root = pathlib.Path(root)
    if process_count == 1:
        return root
    return root / HOST_DIR.format(index=process_index, count=process_count)


def host_range(
    total: int, shard_size: int, process_index: int, process_count: int
) -> tuple[int, int]:
    """The ``[start, stop)`` examples host ``process_index`` writes: contiguous and
    shard-aligned, so every host's shards are complete except the last host's last one."""
    shards = -(-total // shard_size)
    per_host = -(-shards // process_count)
    start = min(process_index * per_host * shard_size, total)
    stop = min((process_index + 1) * per_host * shard_size, total)
    return start, stop


def synthetic_dirs(root: str | os.PathLike) -> list[pathlib.Path]:
    """The data set directories under ``root``: its ``host-*-of-*`` directories in host
    order when it has them, else ``[root]``."""
    root = pathlib.Path(root)
    hosts = sorted(p for p in root.glob(HOST_GLOB) if p.is_dir())
    return hosts if hosts else [root]


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buf, format="PNG")
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _example(encoded: bytes, label: int, index: int, fmt: str, h: int, w: int) -> bytes:
    return records.encode_example(
        {
            "image/encoded": encoded,
            "image/format": fmt,
            "image/class/label": int(label),
            "image/index": int(index),
            "image/height": int(h),
            "image/width": int(w),
        }
    )


class SyntheticShardWriter:
    """Writes generated images and labels as TFRecord shards, resumably.

    Args:
      out_dir: the output directory (created if missing; reopened to resume).
      shard_size: examples per shard.
      metadata: JSON-serialisable settings recorded in the manifest: generator, sampler
        settings, seed, anything else. ``metadata["num_classes"]``, if given, bounds the
        labels.
      image_format: ``"png"`` (lossless) or ``"jpeg"``.
      jpeg_quality: the JPEG quality (1-100, Pillow's scale; used with ``"jpeg"``).

    Raises:
      ValueError: when reopening a directory written with another ``shard_size``, image
        format or JPEG quality.

    Example::

        w = SyntheticShardWriter(out, shard_size=1000, metadata={"seed": 0})
        for start in range(w.next_index, total, batch):
            images, labels = generate(start, batch)   # example ``start`` onwards
            w.write(images, labels)
        w.close()
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        shard_size: int,
        metadata: Mapping[str, Any] | None = None,
        *,
        image_format: str = "png",
        jpeg_quality: int = 95,
    ) -> None:
        if int(shard_size) != shard_size or shard_size < 1:
            raise ValueError(f"shard_size: expected a positive int, got {shard_size!r}")
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format: expected 'png' or 'jpeg', got {image_format!r}")
        self.out_dir = pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = int(shard_size)
        self.image_format = image_format
        if int(jpeg_quality) != jpeg_quality or not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality: expected an int in [1, 100], got {jpeg_quality!r}")
        self.jpeg_quality = int(jpeg_quality)
        self.metadata = dict(metadata or {})
        try:
            json.dumps(self.metadata)
        except TypeError as e:
            raise ValueError(f"metadata: must be JSON-serialisable ({e})") from None
        self.num_classes = self.metadata.get("num_classes")
        self._check_state()
        for stale in self.out_dir.glob(f".{SHARD_PREFIX}*"):
            stale.unlink()  # temporary files of a killed run
        self._shards: list[dict[str, Any]] = []
        for index in range(10**9):
            path = self.out_dir / _shard_name(index)
            if not path.is_file():
                break
            self._shards.append(self._read_sidecar(path))
        for path in self.out_dir.glob(f"{SHARD_PREFIX}*{SHARD_SUFFIX}"):
            m = _SHARD_RE.match(path.name)
            if m and int(m.group(1)) > len(self._shards):
                raise ValueError(
                    f"out_dir: {self.out_dir} has shard {path.name} but not every shard before "
                    "it; the directory is not a resumable synthetic data set"
                )
        self._buffer_images: list[bytes] = []
        self._buffer_labels: list[int] = []
        self._image_hw: tuple[int, int] | None = None
        if self._shards and self._shards[-1].get("image_size"):
            self._image_hw = tuple(self._shards[-1]["image_size"])
        self._closed = False

    # -- state ------------------------------------------------------------------------
    def _check_state(self) -> None:
        state_path = self.out_dir / WRITER_STATE
        state = {
            "shard_size": self.shard_size,
            "image_format": self.image_format,
            "metadata": self.metadata,
        }
        if self.image_format == "jpeg":
            state["jpeg_quality"] = self.jpeg_quality
        if state_path.is_file():
            old = json.loads(state_path.read_text())
            for key in ("shard_size", "image_format", "jpeg_quality"):
                if key in old and old.get(key) != state.get(key):
                    raise ValueError(
                        f"{key}: {self.out_dir} was written with {key}={old.get(key)!r}, "
                        f"cannot resume it with {state[key]!r}"
                    )
            if not self.metadata:
                self.metadata = dict(old.get("metadata", {}))
                self.num_classes = self.metadata.get("num_classes")
        else:
            write_text(state_path, json.dumps(state, indent=2))

    def _read_sidecar(self, path: pathlib.Path) -> dict[str, Any]:
        side = path.with_name(path.name + ".json")
        if side.is_file():
            return json.loads(side.read_text())
        # A shard without its sidecar cannot come from this writer (the sidecar is written
        # first), but rebuild the counts rather than fail.
        counts: dict[str, int] = {}
        n = 0
        for rec in records.iter_records(path):
            label = records.decode_example(rec)["image/class/label"][0]
            counts[str(label)] = counts.get(str(label), 0) + 1
            n += 1
        return {"file": path.name, "count": n, "label_counts": counts}

    @property
    def num_complete_shards(self) -> int:
        """Shards fully written (renamed) so far."""
        return len(self._shards)

    @property
    def next_index(self) -> int:
        """Index of the next example to write: examples in complete shards plus buffered."""
        return sum(s["count"] for s in self._shards) + len(self._buffer_labels)

    @property
    def resume_index(self) -> int:
        """Index of the first example not yet safely on disk (in complete shards)."""
        return sum(s["count"] for s in self._shards)

    # -- writing ----------------------------------------------------------------------
    def write(self, images, labels) -> None:
        """Add a batch of generated images.

        Args:
          images: uint8 ``[B, H, W, 3]`` (numpy or anything ``np.asarray`` accepts).
          labels: int ``[B]``.
        """
        if self._closed:
            raise ValueError(f"writer for {self.out_dir} is closed")
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images: expected uint8 [B, H, W, 3], got {images.dtype} {list(images.shape)}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels: expected shape [{images.shape[0]}], got {list(labels.shape)}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected integers, got {labels.dtype}")
        if labels.size and (
            labels.min() < 0 or (self.num_classes is not None and labels.max() >= self.num_classes)
        ):
            raise ValueError(
                f"labels: expected values in [0, {self.num_classes}), got "
                f"[{labels.min()}, {labels.max()}]"
            )
        for image, label in zip(images, labels, strict=True):
            self._image_hw = image.shape[:2]
            self._buffer_images.append(_encode(image, self.image_format, self.jpeg_quality))
            self._buffer_labels.append(int(label))
            if len(self._buffer_labels) == self.shard_size:
                self._flush()

    def _flush(self) -> None:
        if not self._buffer_labels:
            return
        index = len(self._shards)
        final = self.out_dir / _shard_name(index)
        start = self.resume_index
        h, w = self._image_hw
        counts: dict[str, int] = {}
        for label in self._buffer_labels:
            counts[str(label)] = counts.get(str(label), 0) + 1
        info = {
            "file": final.name,
            "count": len(self._buffer_labels),
            "first_index": start,
            "image_size": [int(h), int(w)],
            "label_counts": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
        }
        with atomic_path(final) as tmp:  # the shard appears only after its sidecar
            with records.RecordWriter(tmp) as writer:
                for i, (data, label) in enumerate(
                    zip(self._buffer_images, self._buffer_labels, strict=True)
                ):
                    writer.write(_example(data, label, start + i, self.image_format, h, w))
            write_text(final.with_name(final.name + ".json"), json.dumps(info))
        self._shards.append(info)
        self._buffer_images, self._buffer_labels = [], []

    def close(self) -> dict[str, Any]:
        """Write the buffered examples as a last shard and the JSON manifest.

        Returns:
          The manifest (also written to ``out_dir/manifest.json``).
        """
        if self._closed:
            return json.loads((self.out_dir / MANIFEST).read_text())
        self._flush()
        counts: dict[int, int] = {}
        for s in self._shards:
            for k, v in s["label_counts"].items():
                counts[int(k)] = counts.get(int(k), 0) + v
        manifest = {
            "format": "synthaug-synthetic/1",
            "num_examples": sum(s["count"] for s in self._shards),
            "num_shards": len(self._shards),
            "shard_size": self.shard_size,
            "image_format": self.image_format,
            "image_size": list(self._image_hw) if self._image_hw else None,
            "shards": [{"file": s["file"], "count": s["count"]} for s in self._shards],
            "count_per_class": {str(k): counts[k] for k in sorted(counts)},
            "metadata": self.metadata,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        write_text(self.out_dir / MANIFEST, json.dumps(manifest, indent=2))
        self._closed = True
        return manifest

    def __enter__(self) -> SyntheticShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception keep only complete shards (resumable); otherwise finish.
        if exc_type is None:
            self.close()


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a closed synthetic data set directory."""
    path = pathlib.Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"out_dir: {path} does not exist; the synthetic data set is missing or was not "
            "closed (SyntheticShardWriter.close writes it)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"out_dir: {path} is not valid JSON ({e})") from None


def read_synthetic(
    out_dir: str | os.PathLike,
    *,
    decode: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    deterministic: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    report: DataReport | None = None,
) -> tf.data.Dataset:
    """Read a synthetic data set written by :class:`SyntheticShardWriter`.

    Shards are written in the order the generator produced the examples, often grouped by
    class; with ``shuffle=True`` the stream is shuffled at two levels, the shard order and
    then the examples through a buffer of ``shuffle_buffer`` records, both from ``seed`` and
    anew on every pass (iteration) over the dataset.

    Args:
      out_dir: a directory with ``manifest.json`` and the shards, or the root of a data set
        written by several hosts (``host-*-of-*`` directories, see :func:`synthetic_dirs`).
      decode: yield decoded uint8 images; False yields the encoded bytes.
      shuffle: shuffle the shard order and the examples (from ``seed``).
      seed: the shuffle seed.
      shuffle_buffer: examples held by the example-level shuffle buffer (encoded records);
        0 shuffles the shard order only. A buffer as large as the data set gives a uniform
        random order.
      deterministic: keep the element order fixed (given the seed); unshuffled, examples
        come in the order they were written.
      process_index: this host's index; hosts read disjoint shards (or records).
      process_count: the number of hosts.
      report: filled with the manifest's counts and, while iterating, the skipped images.

    Returns:
      A ``tf.data.Dataset`` of ``(image uint8 [H, W, 3], label int32)``.

    Raises:
      FileNotFoundError: a missing manifest or shard. While iterating, a shard that is
        truncated or corrupt, or holds another number of records than the manifest lists,
        stops the iteration with an ``InvalidArgumentError`` naming it; an image that cannot
        be decoded is skipped and recorded in ``report``.
    """
    import tensorflow as tf

    from synthaug.imagenet_data.decode import AUTOTUNE, checked_records, finish

    if int(shuffle_buffer) != shuffle_buffer or shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer: expected an int >= 0, got {shuffle_buffer!r}")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index/process_count: expected 0 <= process_index < process_count, "
            f"got {process_index}/{process_count}"
        )
    dirs = synthetic_dirs(out_dir)
    manifests = [read_manifest(d) for d in dirs]
    files, counts = [], []
    for d, manifest in zip(dirs, manifests, strict=True):
        for s in manifest["shards"]:
            files.append(str(d / s["file"]))
            counts.append(int(s["count"]))
    missing = [f for f in files if not pathlib.Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"out_dir: shards listed in the manifest are missing: {missing}")
    shard_records = len(files) < process_count
    if not shard_records:
        files = files[process_index::process_count]
        counts = counts[process_index::process_count]
    num_classes = manifests[0]["metadata"].get("num_classes")
    if report is not None:
        report.source, report.location = "synthetic", str(out_dir)
        report.files = len(files)
        report.num_examples = sum(counts) if not shard_records else None
        report.num_classes = num_classes
    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record, path, index):
        ex = tf.io.parse_single_example(record, features)
        name = tf.strings.join([path, "#", tf.strings.as_string(index)])
        return ex["image/encoded"], ex["image/class/label"], name

    read, ds = checked_records(files, counts)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def shard(path, size, n):
        return read(path, size, n).map(lambda r, i: (r, path, i))

    if deterministic and not shuffle:
        ds = ds.flat_map(shard)
    else:
        ds = ds.interleave(
            shard,
            cycle_length=max(1, min(16, len(files))),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
    if shard_records:
        ds = ds.shard(process_count, process_index)
    if shuffle and shuffle_buffer:
        ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return finish(
        ds,
        report=report,
        decode=decode,
        deterministic=deterministic,
        num_classes=num_classes,
    )


def iter_synthetic(out_dir: str | os.PathLike) -> Iterator[tuple[np.ndarray, int]]:
    """The examples of a synthetic data set in the order they were written, without TensorFlow.

    ``out_dir`` is one data set directory or the root of a multi-host one (its host
    directories are read in host order).

    For small sets read on one host (the demo, tests, inspection); data pipelines use
    :func:`read_synthetic`. Images are decoded with Pillow: PNG shards give exactly the
    written pixels.

    Yields:
      ``(image uint8 [H, W, 3], label)``.
    """
    from PIL import Image

    for directory in synthetic_dirs(out_dir):
        manifest = read_manifest(directory)
        verify_shards(directory)  # counts, indices and labels agree with sidecars and manifest
        for shard in manifest["shards"]:
            path = directory / shard["file"]
            if not path.is_file():
                raise FileNotFoundError(f"out_dir: shard {path} listed in the manifest is missing")
            for rec in records.iter_records(path):
                ex = records.decode_example(rec)
                image = Image.open(io.BytesIO(ex["image/encoded"][0])).convert("RGB")
                yield np.asarray(image, np.uint8), int(ex["image/class/label"][0])


def verify_shards(out_dir: str | os.PathLike) -> int:
    """Check the complete shards of a (possibly unfinished) synthetic directory.

    Each shard ``synthetic-NNNNN.tfrecord`` must hold as many records as its sidecar
    (``.json``) counts, with the labels the sidecar counts and the consecutive example indices
    that continue the shards before it; when the directory has a ``manifest.json``, its shard
    list must be a prefix of the shards found (a reopened, extended set adds shards).
    Temporary files of a killed run are not shards and are not checked.

    Args:
      out_dir: a directory written by :class:`SyntheticShardWriter`.

    Returns:
      The number of examples in the complete shards.

    Raises:
      ValueError: the first shard that disagrees, naming it and what differs.
    """
    out_dir = pathlib.Path(out_dir)
    expected = 0
    found: list[dict[str, Any]] = []
    for index in range(10**9):
        path = out_dir / _shard_name(index)
        if not path.is_file():
            break
        side = path.with_name(path.name + ".json")
        info = json.loads(side.read_text()) if side.is_file() else None
        labels: dict[str, int] = {}
        n = 0
        try:
            for rec in records.iter_records(path):
                ex = records.decode_example(rec)
                got = int(ex["image/index"][0])
                if got != expected + n:
                    raise ValueError(
                        f"shard {path}: record {n} has example index {got}, expected {expected + n}"
                    )
                label = str(int(ex["image/class/label"][0]))
                labels[label] = labels.get(label, 0) + 1
                n += 1
        except (KeyError, IndexError) as e:
            raise ValueError(f"shard {path}: record {n} lacks {e}") from None
        if info is not None:
            if int(info.get("count", -1)) != n:
                raise ValueError(
                    f"shard {path}: holds {n} records, its sidecar {side.name} counts "
                    f"{info.get('count')}"
                )
            if "first_index" in info and int(info["first_index"]) != expected:
                raise ValueError(
                    f"shard {path}: its sidecar starts at example {info['first_index']}, "
                    f"the shards before it end at {expected}"
                )
            if {k: int(v) for k, v in info.get("label_counts", labels).items()} != labels:
                raise ValueError(f"shard {path}: its labels differ from its sidecar's counts")
        found.append({"file": path.name, "count": n})
        expected += n
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        listed = json.loads(manifest.read_text()).get("shards", [])
        for i, entry in enumerate(listed):
            if i >= len(found) or found[i] != {"file": entry["file"], "count": entry["count"]}:
                have = found[i] if i < len(found) else "nothing"
                raise ValueError(
                    f"out_dir: {manifest} lists shard {entry['file']} with {entry['count']} "
                    f"examples, the directory holds {have}"
                )
    return expected
