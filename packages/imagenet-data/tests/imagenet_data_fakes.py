"""Small fake ImageNets in every layout, built once per test session in a temp dir.

Three classes (labels 0, 1, 2 = n01440764, n01443537, n01484850). Every image of class c is
noise around a colour whose dominant channel is c, so a test can check that each decoded
image still carries its own label. Real JPEG files of varied sizes, one PNG stored under a
.JPEG name (as in ILSVRC2012), and one truncated JPEG per layout.
"""

from __future__ import annotations

import io
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]
SIZES = [(48, 64), (64, 40), (56, 56), (40, 72)]
# devkit ILSVRC2012_IDs are not in sorted-wnid order: use a permuted mapping
DEVKIT_IDS = {7: "n01484850", 3: "n01440764", 5: "n01443537"}


def colour_image(label: int, hw: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.full(3, 40.0)
    base[label] = 210.0
    img = base + rng.normal(0, 12, size=(*hw, 3))
    return img.clip(0, 255).astype(np.uint8)


def jpeg_bytes(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def dominant_label(img: np.ndarray) -> int:
    return int(np.argmax(img.reshape(-1, 3).mean(0)))


class FakeImageNet:
    """Paths and expected contents of the fake layouts."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.train_expected: dict[str, int] = {}  # file name -> label (good files only)
        self.corrupt_train = "n01443537_999.JPEG"
        self.val_expected: dict[str, int] = {}
        self.corrupt_val = "ILSVRC2012_val_00000006.JPEG"
        self._build()

    def _build(self) -> None:
        seed = 0
        # train/<wnid>/*.JPEG
        for label, wnid in enumerate(WNIDS):
            d = self.root / "imagenet" / "train" / wnid
            d.mkdir(parents=True)
            for k, hw in enumerate(SIZES):
                seed += 1
                name = f"{wnid}_{k}.JPEG"
                img = colour_image(label, hw, seed)
                data = png_bytes(img) if (label, k) == (2, 1) else jpeg_bytes(img)
                (d / name).write_bytes(data)
                self.train_expected[name] = label
        good = jpeg_bytes(colour_image(1, (64, 64), 999))
        (self.root / "imagenet" / "train" / WNIDS[1] / self.corrupt_train).write_bytes(
            good[: len(good) // 2]
        )
        # val/ flat with devkit ground truth + meta.mat
        val = self.root / "imagenet" / "val"
        val.mkdir()
        wnid_to_id = {w: i for i, w in DEVKIT_IDS.items()}
        val_labels = [2, 0, 1, 1, 0, 2]
        gt_lines = []
        for i, label in enumerate(val_labels, start=1):
            seed += 1
            name = f"ILSVRC2012_val_{i:08d}.JPEG"
            data = jpeg_bytes(colour_image(label, SIZES[i % 4], seed))
            if name == self.corrupt_val:
                data = data[: len(data) // 3]
            else:
                self.val_expected[name] = label
            (val / name).write_bytes(data)
            gt_lines.append(str(wnid_to_id[WNIDS[label]]))
        data_dir = self.root / "imagenet" / "ILSVRC2012_devkit_t12" / "data"
        data_dir.mkdir(parents=True)
        (data_dir / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(gt_lines) + "\n")
        write_meta_mat(data_dir / "meta.mat")
        # val sorted into class folders (another root)
        for name, label in self.val_expected.items():
            d = self.root / "imagenet_sorted" / "val" / WNIDS[label]
            d.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes((val / name).read_bytes())
        # TFRecord shards (Inception/TPU style: 1-based labels), 2 shards
        import tensorflow as tf

        rec_dir = self.root / "records"
        rec_dir.mkdir()
        items = sorted(self.train_expected.items())
        items.append((self.corrupt_train, 1))
        self.records_expected = dict(self.train_expected)
        for s in range(2):
            with tf.io.TFRecordWriter(str(rec_dir / f"train-{s:05d}-of-00002")) as w:
                for name, label in items[s::2]:
                    wnid = name.split("_")[0]
                    data = (self.root / "imagenet" / "train" / wnid / name).read_bytes()
                    feat = {
                        "image/encoded": _bytes_feature(tf, data),
                        "image/class/label": tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[label + 1])
                        ),
                        "image/filename": _bytes_feature(tf, name.encode()),
                    }
                    ex = tf.train.Example(features=tf.train.Features(feature=feat))
                    w.write(ex.SerializeToString())


def _bytes_feature(tf, data: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))


def write_meta_mat(path: pathlib.Path) -> None:
    """A devkit-style meta.mat: struct array `synsets` with ILSVRC2012_ID, WNID, words."""
    from scipy import io as sio

    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [
        (np.array([[i]], np.uint16), np.array([w]), np.array(["x"]), np.array([[0]]))
        for i, w in sorted(DEVKIT_IDS.items())
    ]
    # a non-leaf synset as in the real file
    rows.append(
        (
            np.array([[1001]], np.uint16),
            np.array(["n00001740"]),
            np.array(["entity"]),
            np.array([[3]]),
        )
    )
    arr = np.empty((len(rows), 1), dtype=dtype)
    for k, r in enumerate(rows):
        arr[k, 0] = r
    sio.savemat(str(path), {"synsets": arr})
