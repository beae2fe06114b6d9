import json

import numpy as np
import pytest
import tensorflow as tf

from synthaug import imagenet_data as d

META = {
    "generator": "toy-cascade",
    "sampler": {"guidance": 1.25, "steps": 8},
    "seed": 3,
    "num_classes": 5,
}


def generated(start, n):
    """The "generator": example i is an 8x12 image filled with i % 251, label i % 5."""
    idx = np.arange(start, start + n)
    images = np.broadcast_to((idx % 251).astype(np.uint8)[:, None, None, None], (n, 8, 12, 3))
    return images.copy(), (idx % 5).astype(np.int32)


def test_write_read_round_trip(tmp_path):
    w = d.SyntheticShardWriter(tmp_path / "syn", shard_size=4, metadata=META)
    assert w.resume_index == 0
    for start in range(0, 10, 3):
        w.write(*generated(start, min(3, 10 - start)))
    manifest = w.close()
    names = sorted(p.name for p in (tmp_path / "syn").iterdir())
    assert [n for n in names if n.endswith(".tfrecord")] == [
        "synthetic-00000.tfrecord",
        "synthetic-00001.tfrecord",
        "synthetic-00002.tfrecord",
    ]
    assert not [n for n in names if n.endswith(".tmp")]
    on_disk = json.loads((tmp_path / "syn" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["num_examples"] == 10 and manifest["num_shards"] == 3
    assert [s["count"] for s in manifest["shards"]] == [4, 4, 2]
    assert manifest["count_per_class"] == {"0": 2, "1": 2, "2": 2, "3": 2, "4": 2}
    assert manifest["metadata"] == META and manifest["created"].endswith("+00:00")
    ds = d.read_synthetic(tmp_path / "syn")
    out = list(ds.as_numpy_iterator())
    images, labels = generated(0, 10)
    assert np.array_equal(np.stack([x for x, _ in out]), images)
    assert [int(y) for _, y in out] == labels.tolist()
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int32
    # the same examples without TensorFlow
    plain = list(d.iter_synthetic(tmp_path / "syn"))
    assert np.array_equal(np.stack([x for x, _ in plain]), images)
    assert [y for _, y in plain] == labels.tolist()
    # the same records through the generic TFRecord source
    rec = list(
        d.from_tfrecords(str(tmp_path / "syn" / "*.tfrecord"), num_classes=5).as_numpy_iterator()
    )
    assert sorted(int(y) for _, y in rec) == sorted(labels.tolist())


def test_killed_generation_resumes_without_duplicates_or_losses(tmp_path):
    out = tmp_path / "syn"
    w = d.SyntheticShardWriter(out, shard_size=10, metadata=META)
    for start in range(0, 21, 7):  # 21 examples: 2 complete shards, 1 buffered
        w.write(*generated(start, 7))
    assert w.num_complete_shards == 2 and w.next_index == 21
    del w  # killed: no close()
    (out / ".synthetic-00002.tfrecord.tmp").write_bytes(b"half a shard")  # killed mid-flush
    w = d.SyntheticShardWriter(out, shard_size=10, metadata=META)
    assert w.resume_index == 20 and w.next_index == 20
    assert not (out / ".synthetic-00002.tfrecord.tmp").exists()
    total = 33
    for start in range(w.resume_index, total, 8):
        w.write(*generated(start, min(8, total - start)))
    manifest = w.close()
    assert manifest["num_examples"] == total
    got = list(d.read_synthetic(out).as_numpy_iterator())
    images, labels = generated(0, total)
    assert [int(y) for _, y in got] == labels.tolist()
    assert np.array_equal(np.stack([x for x, _ in got]), images)
    counts = np.bincount(labels, minlength=5)
    assert manifest["count_per_class"] == {str(c): int(counts[c]) for c in range(5)}
    # a reopened closed directory resumes after everything
    again = d.SyntheticShardWriter(out, shard_size=10)
    assert again.resume_index == total and again.metadata == META


def test_jpeg_shards_and_host_sharding(tmp_path):
    w = d.SyntheticShardWriter(
        tmp_path / "j", shard_size=3, metadata={"seed": 1}, image_format="jpeg"
    )
    rng = np.random.default_rng(0)
    w.write(rng.integers(0, 255, (7, 16, 16, 3), dtype=np.uint8), np.arange(7))
    w.close()
    report = d.DataReport()
    full = list(d.read_synthetic(tmp_path / "j", report=report).as_numpy_iterator())
    assert report.num_examples == 7 and report.files == 3
    assert [int(y) for _, y in full] == list(range(7))
    for n in (2, 5):
        parts = [
            [
                int(y)
                for _, y in d.read_synthetic(
                    tmp_path / "j", process_index=i, process_count=n
                ).as_numpy_iterator()
            ]
            for i in range(n)
        ]
        assert sorted(sum(parts, [])) == list(range(7))


def test_writer_errors(tmp_path):
    w = d.SyntheticShardWriter(tmp_path / "e", shard_size=4, metadata=META)
    with pytest.raises(ValueError, match="images"):
        w.write(np.zeros((2, 8, 8, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match="images"):
        w.write(np.zeros((2, 8, 8), np.uint8), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        w.write(np.zeros((2, 8, 8, 3), np.uint8), [0])
    with pytest.raises(ValueError, match=r"labels.*\[0, 5\)"):
        w.write(np.zeros((2, 8, 8, 3), np.uint8), [0, 5])
    with pytest.raises(ValueError, match="shard_size"):
        d.SyntheticShardWriter(tmp_path / "e", shard_size=8)
    with pytest.raises(ValueError, match="shard_size"):
        d.SyntheticShardWriter(tmp_path / "f", shard_size=0)
    with pytest.raises(ValueError, match="metadata"):
        d.SyntheticShardWriter(tmp_path / "g", shard_size=2, metadata={"x": object()})
    with pytest.raises(FileNotFoundError, match="manifest"):
        d.read_synthetic(tmp_path / "e")


def _labelled(n, label):
    x = np.full((n, 4, 4, 3), label, np.uint8)
    return tf.data.Dataset.from_tensor_slices((x, np.full(n, label, np.int32)))


def test_mix_concat_and_ratio():
    real, syn = _labelled(100, 0), _labelled(50, 1)
    ds, rep = d.mix(real, syn)
    assert rep.mode == "concat" and rep.total_examples == 150
    assert rep.real_examples == 100 and rep.synthetic_examples == 50
    assert rep.synthetic_fraction == pytest.approx(1 / 3)
    labels = [int(y) for _, y in ds.as_numpy_iterator()]
    assert labels == [0] * 100 + [1] * 50
    assert "33.3% synthetic" in rep.summary()

    ds, rep = d.mix(real, syn, ratio=0.25, seed=0, with_source=True)
    assert rep.mode == "ratio" and rep.synthetic_fraction == 0.25 and rep.total_examples is None
    comp = d.measure_composition(ds, 4000)
    assert comp["real"] + comp["synthetic"] == 4000
    assert comp["synthetic_fraction"] == pytest.approx(0.25, abs=0.03)
    # the source flag matches the labels (real = 0, synthetic = 1)
    for _, y, is_syn in ds.take(200).as_numpy_iterator():
        assert bool(is_syn) == bool(y)
    ds2, _ = d.mix(real, syn, ratio=0.25, seed=0)
    a = [int(y) for _, y in ds2.take(300).as_numpy_iterator()]
    b = [int(y) for _, y in d.mix(real, syn, ratio=0.25, seed=0)[0].take(300).as_numpy_iterator()]
    assert a == b


def test_mix_sizes_and_errors():
    real = _labelled(10, 0).filter(lambda x, y: True)  # unknown cardinality
    syn = _labelled(30, 1)
    _, rep = d.mix(real, syn)
    assert rep.real_examples is None and rep.total_examples is None
    _, rep = d.mix(real, syn, real_size=10)
    assert rep.total_examples == 40 and rep.synthetic_fraction == pytest.approx(0.75)
    only_syn, _ = d.mix(real, syn, ratio=1.0)
    assert {int(y) for _, y in only_syn.take(50).as_numpy_iterator()} == {1}
    with pytest.raises(ValueError, match="ratio"):
        d.mix(real, syn, ratio=1.5)


def test_shard_without_its_sidecar_is_recounted_from_its_records(tmp_path):
    out = tmp_path / "syn"
    w = d.SyntheticShardWriter(out, shard_size=4, metadata=META)
    w.write(*generated(0, 8))  # two complete shards, nothing buffered
    del w  # killed before close()
    (out / "synthetic-00001.tfrecord.json").unlink()
    w = d.SyntheticShardWriter(out, shard_size=4, metadata=META)
    assert w.resume_index == 8
    w.write(*generated(8, 2))
    manifest = w.close()
    assert manifest["num_examples"] == 10
    assert manifest["count_per_class"] == {"0": 2, "1": 2, "2": 2, "3": 2, "4": 2}
    assert [y for _, y in d.iter_synthetic(out)] == generated(0, 10)[1].tolist()


def test_jpeg_quality_is_validated_and_fixed_at_creation(tmp_path):
    with pytest.raises(ValueError, match="jpeg_quality"):
        d.SyntheticShardWriter(tmp_path / "q", shard_size=2, image_format="jpeg", jpeg_quality=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    sizes = {}
    for q in (30, 95):
        w = d.SyntheticShardWriter(tmp_path / f"q{q}", 2, image_format="jpeg", jpeg_quality=q)
        w.write(x, [0, 1])
        w.close()
        sizes[q] = (tmp_path / f"q{q}" / "synthetic-00000.tfrecord").stat().st_size
    assert sizes[30] < sizes[95]
    with pytest.raises(ValueError, match="jpeg_quality"):
        d.SyntheticShardWriter(tmp_path / "q30", 2, image_format="jpeg", jpeg_quality=95)
