import numpy as np
import pytest
import tensorflow as tf
from imagenet_data_fakes import WNIDS, dominant_label

from synthaug import imagenet_data as d


def _collect(ds):
    return [(x, int(y)) for x, y in ds.as_numpy_iterator()]


def test_folders_train_skips_corrupt_and_keeps_labels(fake_imagenet):
    report = d.DataReport()
    ds = d.from_folders(fake_imagenet.root / "imagenet", "train", report=report)
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int32
    out = _collect(ds)
    assert len(out) == len(fake_imagenet.train_expected) == 12
    for x, y in out:
        assert x.ndim == 3 and x.shape[-1] == 3
        assert dominant_label(x) == y
    assert report.num_examples == 13 and report.num_skipped == 1
    ((name, reason),) = report.skipped.items()
    assert name.endswith(fake_imagenet.corrupt_train) and "truncated" in reason
    # a second epoch is not disturbed and the report does not double count
    assert len(_collect(ds)) == 12 and report.num_skipped == 1
    assert fake_imagenet.corrupt_train in report.summary()


def test_folders_png_named_jpeg_is_decoded(fake_imagenet):
    ds = d.from_folders(fake_imagenet.root / "imagenet", "train", decode=False)
    encoded = [b for b, _ in ds.as_numpy_iterator()]
    assert sum(b.startswith(b"\x89PNG") for b in encoded) == 1
    assert all(tf.image.is_jpeg(b) or b.startswith(b"\x89PNG") for b in encoded)


def test_folders_val_with_devkit_ground_truth(fake_imagenet):
    report = d.DataReport()
    out = _collect(d.from_folders(fake_imagenet.root / "imagenet", "val", report=report))
    expected = [fake_imagenet.val_expected[k] for k in sorted(fake_imagenet.val_expected)]
    assert [y for _, y in out] == expected
    assert all(dominant_label(x) == y for x, y in out)
    assert report.num_skipped == 1
    assert next(iter(report.skipped)).endswith(fake_imagenet.corrupt_val)


def test_folders_val_in_class_folders_matches(fake_imagenet):
    flat = _collect(d.from_folders(fake_imagenet.root / "imagenet", "val"))
    by_class = _collect(d.from_folders(fake_imagenet.root / "imagenet_sorted", "val"))
    assert sorted(y for _, y in flat) == sorted(y for _, y in by_class)
    assert all(dominant_label(x) == y for x, y in by_class)


def test_val_label_files(fake_imagenet, tmp_path):
    gt = fake_imagenet.root / "imagenet/ILSVRC2012_devkit_t12/data"
    table = d.read_val_labels(
        gt / "ILSVRC2012_validation_ground_truth.txt", devkit_meta=gt / "meta.mat"
    )
    assert table == {1: 2, 2: 0, 3: 1, 4: 1, 5: 0, 6: 2}
    assert d.read_devkit_meta(gt / "meta.mat") == {7: WNIDS[2], 3: WNIDS[0], 5: WNIDS[1]}
    wn = tmp_path / "labels.txt"
    wn.write_text(f"{WNIDS[1]}\n{WNIDS[0]}\n")
    assert d.read_val_labels(wn) == {1: 1, 2: 0}
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text(f"ImageId,PredictionString\nILSVRC2012_val_00000002,{WNIDS[2]} 1 2 3 4\n")
    assert d.read_val_labels(csv) == {"ILSVRC2012_val_00000002": 2}
    with pytest.raises(FileNotFoundError, match="meta.mat"):
        d.read_val_labels(gt / "ILSVRC2012_validation_ground_truth.txt")


def test_host_sharding_partitions_the_files(fake_imagenet):
    root = fake_imagenet.root / "imagenet"
    full = d.from_folders(root, "train", decode=False)
    everything = sorted(b for b, _ in full.as_numpy_iterator())
    parts = [
        sorted(
            b
            for b, _ in d.from_folders(
                root, "train", decode=False, process_index=i, process_count=3
            ).as_numpy_iterator()
        )
        for i in range(3)
    ]
    assert sum(len(p) for p in parts) == len(everything)
    assert sorted(sum(parts, [])) == everything
    with pytest.raises(ValueError, match="process_index"):
        d.from_folders(root, "train", process_index=3, process_count=3)


def test_deterministic_and_shuffled_order(fake_imagenet):
    root = fake_imagenet.root / "imagenet"
    a = [y for _, y in _collect(d.from_folders(root, "train"))]
    assert a == sorted(a)  # file order: class folders sorted by wnid
    s1 = _collect(d.from_folders(root, "train", shuffle=True, seed=3))
    s2 = _collect(d.from_folders(root, "train", shuffle=True, seed=3))
    assert [y for _, y in s1] == [y for _, y in s2]
    assert all(np.array_equal(p[0], q[0]) for p, q in zip(s1, s2, strict=True))
    assert [y for _, y in s1] != a
    assert all(dominant_label(x) == y for x, y in s1)


def test_tfrecords(fake_imagenet):
    report = d.DataReport()
    pattern = str(fake_imagenet.root / "records" / "train-*")
    out = _collect(d.from_tfrecords(pattern, label_offset=-1, report=report))
    assert len(out) == 12 and all(dominant_label(x) == y for x, y in out)
    assert report.files == 2 and list(report.skipped) == [fake_imagenet.corrupt_train]
    folders = _collect(d.from_folders(fake_imagenet.root / "imagenet", "train"))
    assert sorted(y for _, y in out) == sorted(y for _, y in folders)
    # labels outside [0, num_classes) are skipped and reported, never kept
    report2 = d.DataReport()
    out2 = _collect(d.from_tfrecords(pattern, num_classes=3, report=report2))
    assert sorted(y for _, y in out2) == [1] * 4 + [2] * 4
    assert any("label 3 outside [0, 3)" in why for why in report2.skipped.values())
    # sharding by host: by files with enough shards, by records otherwise
    halves = [
        _collect(d.from_tfrecords(pattern, label_offset=-1, process_index=i, process_count=2))
        for i in range(2)
    ]
    thirds = [
        _collect(d.from_tfrecords(pattern, label_offset=-1, process_index=i, process_count=3))
        for i in range(3)
    ]
    for parts in (halves, thirds):
        assert sorted(y for p in parts for _, y in p) == sorted(y for _, y in out)


def test_missing_inputs_are_clear_errors(fake_imagenet, tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        d.from_tfrecords(str(tmp_path / "nothing-*"))
    with pytest.raises(FileNotFoundError, match="split"):
        d.from_folders(fake_imagenet.root / "imagenet", "test")
    bad = tmp_path / "bad" / "train" / "cats"
    bad.mkdir(parents=True)
    with pytest.raises(KeyError, match="cats"):
        d.from_folders(tmp_path / "bad", "train")
    flat = tmp_path / "flat" / "val"
    flat.mkdir(parents=True)
    (flat / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="ground-truth"):
        d.from_folders(tmp_path / "flat", "val")


def test_garbage_bytes_and_trailing_data(tmp_path):
    from imagenet_data_fakes import colour_image, jpeg_bytes

    root = tmp_path / "r" / "train" / WNIDS[0]
    root.mkdir(parents=True)
    good = jpeg_bytes(colour_image(0, (32, 32), 1))
    (root / "a.JPEG").write_bytes(good + b"\x00trailing")  # valid, with trailing bytes
    (root / "b.JPEG").write_bytes(b"not an image at all, just text" * 3)
    (root / "c.JPEG").write_bytes(b"")
    (root / "d.JPEG").write_bytes(good)
    report = d.DataReport()
    out = _collect(d.from_folders(tmp_path / "r", "train", report=report))
    assert len(out) == 2
    assert sorted(n.rsplit("/", 1)[-1] for n in report.skipped) == ["b.JPEG", "c.JPEG"]
