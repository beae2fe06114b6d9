"""No silent data loss: every example is yielded, skipped by name, or the read fails loudly.

Each fault is a real file: a TFRecord shard cut short, a shard with one flipped byte, a JPEG
whose body is garbage between valid markers. The accounting ``examples - skipped ==
yielded`` is checked on every pass that completes.
"""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from imagenet_data_fakes import colour_image, dominant_label, jpeg_bytes

from synthaug import imagenet_data as d


def _collect(ds):
    return [(x, int(y)) for x, y in ds.as_numpy_iterator()]


def _garbage_body_jpeg(seed: int) -> bytes:
    """Valid SOI header and EOI marker, random bytes in between: passes the structural
    check, fails TensorFlow's decoder."""
    good = jpeg_bytes(colour_image(0, (48, 48), seed))
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, len(good) - 300, dtype=np.uint8).tobytes()
    return good[:200] + body + b"\xff\xd9"


def _copy_records(fake_imagenet, tmp_path):
    out = tmp_path / "records"
    shutil.copytree(fake_imagenet.root / "records", out)
    return sorted(out.iterdir())


def _count_records(path) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(str(path)))


def test_intact_shards_account_for_every_record(fake_imagenet, tmp_path):
    shards = _copy_records(fake_imagenet, tmp_path)
    examples = sum(_count_records(s) for s in shards)
    report = d.DataReport()
    out = _collect(d.from_tfrecords([str(s) for s in shards], label_offset=-1, report=report))
    assert examples == 13
    assert examples - report.num_skipped == len(out) == 12


def test_truncated_shard_fails_naming_it(fake_imagenet, tmp_path):
    shards = _copy_records(fake_imagenet, tmp_path)
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) - 500])  # the tail of the last record is gone
    ds = d.from_tfrecords([str(s) for s in shards], label_offset=-1)
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        _collect(ds)
    msg = e.value.message
    assert f"{shards[1]}: data loss" in msg and "truncated or corrupt" in msg
    assert f"of {len(data) - 500} bytes" in msg
    assert str(shards[0]) not in msg


def test_flipped_byte_fails_naming_the_shard(fake_imagenet, tmp_path):
    shards = _copy_records(fake_imagenet, tmp_path)
    data = bytearray(shards[0].read_bytes())
    data[len(data) // 2] ^= 0x01  # inside some record's body: its checksum no longer matches
    shards[0].write_bytes(bytes(data))
    ds = d.from_tfrecords([str(s) for s in shards], label_offset=-1, shuffle=True, seed=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="data loss") as e:
        _collect(ds)
    assert str(shards[0]) in e.value.message
    # the same shard alone: the records before the flip are not enough to pass
    with pytest.raises(tf.errors.InvalidArgumentError, match="data loss"):
        _collect(d.from_tfrecords(str(shards[0]), label_offset=-1))


def test_deleted_shard_fails_naming_it(fake_imagenet, tmp_path):
    shards = _copy_records(fake_imagenet, tmp_path)
    ds = d.from_tfrecords([str(s) for s in shards], label_offset=-1)
    shards[1].unlink()  # vanishes after the dataset was built
    with pytest.raises(tf.errors.InvalidArgumentError, match="data loss") as e:
        _collect(ds)
    assert str(shards[1]) in e.value.message


def test_garbage_jpeg_in_tfrecords_is_skipped_by_name(fake_imagenet, tmp_path):
    good = jpeg_bytes(colour_image(2, (40, 40), 5))
    path = tmp_path / "mixed-00000-of-00001"
    with tf.io.TFRecordWriter(str(path)) as w:
        items = (
            [("a.JPEG", good), ("garbage.JPEG", _garbage_body_jpeg(3)), ("c.JPEG", good)]
            + [(f"g{i}.JPEG", good) for i in range(70)]  # past one decode chunk
            + [("garbage2.JPEG", _garbage_body_jpeg(4))]
        )
        for name, data in items:
            ex = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "image/encoded": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[data])
                        ),
                        "image/class/label": tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[2])
                        ),
                        "image/filename": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[name.encode()])
                        ),
                    }
                )
            )
            w.write(ex.SerializeToString())
    assert len(items) == 74
    # the structural check alone passes these files: only the decoder finds them out
    assert bool(d.looks_complete(tf.constant(_garbage_body_jpeg(3))))
    report = d.DataReport()
    out = _collect(d.from_tfrecords(str(path), report=report))
    assert sorted(report.skipped) == ["garbage.JPEG", "garbage2.JPEG"]
    assert all("cannot decode" in why for why in report.skipped.values())
    assert 74 - report.num_skipped == len(out) == 72
    assert all(y == 2 and dominant_label(x) == 2 for x, y in out)


def test_garbage_jpeg_in_folders_is_skipped_by_name(tmp_path):
    root = tmp_path / "r" / "train" / "n01440764"
    root.mkdir(parents=True)
    names = []
    for i in range(6):
        name = f"x{i}.JPEG"
        data = _garbage_body_jpeg(i) if i in (0, 4) else jpeg_bytes(colour_image(0, (32, 32), i))
        (root / name).write_bytes(data)
        names.append(name)
    for deterministic in (True, False):
        report = d.DataReport()
        ds = d.from_folders(tmp_path / "r", "train", report=report, deterministic=deterministic)
        out = _collect(ds)
        assert sorted(n.rsplit("/", 1)[-1] for n in report.skipped) == ["x0.JPEG", "x4.JPEG"]
        assert report.num_examples - report.num_skipped == len(out) == 4


def test_unreadable_file_in_folders_fails_naming_it(tmp_path):
    root = tmp_path / "r" / "train" / "n01440764"
    root.mkdir(parents=True)
    for i in range(3):
        (root / f"x{i}.JPEG").write_bytes(jpeg_bytes(colour_image(0, (32, 32), i)))
    ds = d.from_folders(tmp_path / "r", "train")
    (root / "x1.JPEG").unlink()
    with pytest.raises(tf.errors.NotFoundError, match="x1.JPEG"):
        _collect(ds)
