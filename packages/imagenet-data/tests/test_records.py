"""TFRecord framing and tf.train.Example encoding without TensorFlow, checked against it."""

import struct

import numpy as np
import pytest

from synthaug.imagenet_data import records

tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize(
    "data,expected",
    [
        # RFC 3720 (iSCSI) appendix B.4 test vectors, and the usual check value.
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (b"123456789", 0xE3069283),
        (b"", 0x0),
    ],
)
def test_crc32c_known_vectors(data, expected):
    assert records.crc32c(data) == expected


def _tf_example(features):
    def feature(v):
        if isinstance(v[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
        if isinstance(v[0], int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=v))
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    feat = {k: feature(v) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()


FEATURES = {
    "image/encoded": [bytes(range(256)) * 3, b""],
    "image/class/label": [7],
    "ints": [0, -1, -(2**63), 2**63 - 1, 300],
    "floats": [0.5, -1.25, 2.0**127, float("inf")],
}


def _same_example(mine: bytes, theirs: bytes) -> bool:
    # Map entries may come in any order (TensorFlow's own order is unspecified): compare the
    # parsed messages, and the sizes.
    parse = tf.train.Example.FromString
    return parse(mine) == parse(theirs) and len(mine) == len(theirs)


def test_encode_example_matches_tensorflow():
    assert _same_example(records.encode_example(FEATURES), _tf_example(FEATURES))
    # str values are bytes_list entries; a single value needs no list; numpy ints are ints.
    assert _same_example(
        records.encode_example({"f": "png", "n": np.int64(3)}),
        _tf_example({"f": [b"png"], "n": [3]}),
    )
    one = {"image/class/label": [7]}  # one entry: no ordering freedom, the very same bytes
    assert records.encode_example(one) == _tf_example(one)


def test_decode_example_reads_what_tensorflow_writes():
    decoded = records.decode_example(_tf_example(FEATURES))
    assert decoded == FEATURES


def test_decode_example_accepts_unpacked_repeated_scalars():
    # proto2-style writers emit one field per value instead of a packed list.
    ints = records._pb_varint(1, 5) + records._pb_varint(1, -2)
    floats = records._pb_float(1, 1.5) + records._pb_float(1, -0.25)
    entry_i = records._pb_bytes(1, b"i") + records._pb_bytes(2, records._pb_bytes(3, ints))
    entry_f = records._pb_bytes(1, b"f") + records._pb_bytes(2, records._pb_bytes(2, floats))
    record = records._pb_bytes(1, records._pb_bytes(1, entry_i) + records._pb_bytes(1, entry_f))
    assert records.decode_example(record) == {"i": [5, -2], "f": [1.5, -0.25]}
    parsed = tf.io.parse_single_example(
        record,
        {"i": tf.io.FixedLenFeature([2], tf.int64), "f": tf.io.FixedLenFeature([2], tf.float32)},
    )
    assert parsed["i"].numpy().tolist() == [5, -2]
    assert parsed["f"].numpy().tolist() == [1.5, -0.25]


def test_encode_example_rejects_bad_values():
    with pytest.raises(ValueError, match="feature 'x'.*empty"):
        records.encode_example({"x": []})
    with pytest.raises(ValueError, match="feature 'y'.*one kind"):
        records.encode_example({"y": [b"a", 1]})


@pytest.mark.parametrize("use_tensorflow", [False, True])
def test_record_files_round_trip_with_tensorflow(tmp_path, use_tensorflow):
    recs = [records.encode_example({"i": [i], "b": [bytes([i]) * i]}) for i in range(20)]
    mine = tmp_path / "mine.tfrecord"
    with records.RecordWriter(mine, use_tensorflow=use_tensorflow) as w:
        for r in recs:
            w.write(r)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(mine))] == recs
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as w:
        for r in recs:
            w.write(r)
    assert theirs.read_bytes() == mine.read_bytes()
    assert list(records.iter_records(theirs)) == recs


def test_iter_records_names_the_file_on_corruption(tmp_path):
    path = tmp_path / "r.tfrecord"
    with records.RecordWriter(path, use_tensorflow=False) as w:
        w.write(b"hello world")
        w.write(b"second")
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    bad = raw.copy()
    bad[12] ^= 0x01  # a flipped bit in the first record's data
    (tmp_path / "bad.tfrecord").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"bad\.tfrecord: checksum mismatch .* byte 0"):
        list(records.iter_records(tmp_path / "bad.tfrecord"))
    assert list(records.iter_records(tmp_path / "bad.tfrecord", verify=False))[0] != b"hello world"
    (tmp_path / "short.tfrecord").write_bytes(bytes(raw[: 12 + length + 4 + 5]))
    with pytest.raises(ValueError, match=r"short\.tfrecord: truncated record header at byte 27"):
        list(records.iter_records(tmp_path / "short.tfrecord"))
    head = bytearray(raw)
    head[0] ^= 0x01
    (tmp_path / "head.tfrecord").write_bytes(bytes(head))
    with pytest.raises(ValueError, match="corrupt record length at byte 0"):
        list(records.iter_records(tmp_path / "head.tfrecord"))
