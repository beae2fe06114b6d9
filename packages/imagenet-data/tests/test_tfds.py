"""The TFDS source, for real: TFDS prepares `imagenet2012` offline from fake tar files."""

import io
import tarfile

import pytest
from imagenet_data_fakes import WNIDS, colour_image, dominant_label, jpeg_bytes

from synthaug import imagenet_data as d

tfds = pytest.importorskip("tensorflow_datasets")


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def tfds_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    manual = root / "manual"
    manual.mkdir()
    # ILSVRC2012_img_train.tar: one tar per class, as distributed
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as big:
        for label, wnid in enumerate(WNIDS):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as sub:
                for k in range(3):
                    img = colour_image(label, (40 + 8 * k, 56), 100 * label + k)
                    _add(sub, f"{wnid}_{k}.JPEG", jpeg_bytes(img))
            _add(big, f"{wnid}.tar", buf.getvalue())
    # ILSVRC2012_img_val.tar: TFDS labels val images from its bundled validation_labels.txt
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val:
        for i in range(1, 5):
            _add(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg_bytes(colour_image(0, (32, 48), i)))
    return root / "data", manual


def test_from_tfds_prepares_and_reads(tfds_dirs):
    data_dir, manual = tfds_dirs
    with pytest.raises(FileNotFoundError, match="not prepared"):
        d.from_tfds(data_dir, "train")
    report = d.DataReport()
    train = d.from_tfds(data_dir, "train", manual_dir=manual, report=report)
    out = [(x, int(y)) for x, y in train.as_numpy_iterator()]
    assert len(out) == 9 and report.num_examples == 9 and report.num_classes == 1000
    assert sorted(y for _, y in out) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(dominant_label(x) == y for x, y in out)
    # validation labels follow TFDS's table, i.e. the standard wnid order of this package
    labels_file = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    expected = [d.wnid_to_label(w) for w in labels_file.read_text().split()[:4]]
    val = [int(y) for _, y in d.from_tfds(data_dir, "val").as_numpy_iterator()]
    assert sorted(val) == sorted(expected)
    # deterministic order, host shards partition the split
    again = [int(y) for _, y in d.from_tfds(data_dir, "train").as_numpy_iterator()]
    assert again == [y for _, y in out]
    parts = [
        [
            int(y)
            for _, y in d.from_tfds(
                data_dir, "train", process_index=i, process_count=2
            ).as_numpy_iterator()
        ]
        for i in range(2)
    ]
    assert sorted(parts[0] + parts[1]) == sorted(again) and all(parts)
    # encoded bytes for fused decode-and-crop
    enc, _ = next(iter(d.from_tfds(data_dir, "train", decode=False)))
    assert d.eval_resize_crop(enc, resize_size=32, crop_size=28).shape == (28, 28, 3)
