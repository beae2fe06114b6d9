"""Benchmark: the ImageNet eval input pipeline against a PIL loop on the same JPEG files.

Eval pipeline = read + decode + resize shorter side to 256 + center crop 224, i.e.
``from_folders(..., decode=False).map(eval_resize_crop)`` with tf.data parallelism (JPEG
bytes are decoded with ``decode_and_crop_jpeg``, only the kept window). The peer opens each
file with PIL, converts to RGB, resizes the shorter side to 256 (bilinear) and center crops
224, in a Python loop. Both read the same files in the same process.

Needs TensorFlow: run it in the development environment (the reference tools environment
has no TensorFlow), e.g.
    /work/devenv/bin/python tools/bench/run.py --only imagenet_data --quick
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Result, measure  # noqa: E402

# typical ILSVRC2012 image sizes (the mean is about 400x350)
_SIZES = [(375, 500), (500, 375), (333, 500), (500, 400), (281, 500), (400, 400)]


def _make_files(root: pathlib.Path, n: int) -> list[pathlib.Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    d = root / "val" / "n01440764"
    d.mkdir(parents=True)
    files = []
    for i in range(n):
        h, w = _SIZES[i % len(_SIZES)]
        small = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 6, size=(h, w, 3))
        arr = (np.asarray(img, np.float64) + noise).clip(0, 255).astype(np.uint8)
        path = d / f"img_{i:05d}.JPEG"
        Image.fromarray(arr).save(path, format="JPEG", quality=90)
        files.append(path)
    return files


def _pil_eval(path: pathlib.Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = 256 / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
        w, h = im.size
        left, top = (w - 224) // 2, (h - 224) // 2
        return np.asarray(im.crop((left, top, left + 224, top + 224)))


def run(quick: bool) -> list[Result]:
    import tensorflow as tf

    from synthaug import imagenet_data as d

    n = 96 if quick else 512
    runs = 5 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        files = _make_files(root, n)

        # this module is loaded from a file path, outside sys.modules: skip autograph
        @tf.autograph.experimental.do_not_convert
        def preprocess(encoded, label):
            return d.eval_resize_crop(encoded), label

        ds = (
            d.from_folders(root, "val", decode=False, deterministic=False)
            .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .batch(32)
            .prefetch(tf.data.AUTOTUNE)
        )

        def tf_epoch():
            count = 0
            for x, _ in ds:
                count += int(x.shape[0])
            assert count == n, count

        def pil_epoch():
            for f in files:
                out = _pil_eval(f)
            assert out.shape == (224, 224, 3)

        t_tf = measure(tf_epoch, warmup=1, runs=runs)
        t_pil = measure(pil_epoch, warmup=1, runs=runs)
    tf_rate, pil_rate = n / t_tf.median, n / t_pil.median
    return [
        Result(
            name="imagenet_data.eval_pipeline",
            metric="images/s (decode + resize 256 + center crop 224)",
            value=tf_rate,
            unit="img/s",
            peer="PIL loop",
            peer_value=pil_rate,
            ratio=tf_rate / pil_rate,
            target=1.5,
            timing=t_tf,
            peer_timing=t_pil,
            notes=(
                f"{n} JPEG files (q90, ~375x500) on local disk, {os.cpu_count()} CPU cores; "
                "tf.data with AUTOTUNE parallelism, fused decode_and_crop_jpeg and one "
                "bilinear crop_and_resize (eval_resize_crop defaults) vs a single-threaded PIL "
                "open/convert/resize/crop loop; run in the development "
                "environment (TensorFlow)."
            ),
        )
    ]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r.as_dict())
