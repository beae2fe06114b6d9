"""Benchmark: the synthetic shard writer (PNG and JPEG), and the CRC-32C of its framing.

The writer (``SyntheticShardWriter``: encode with Pillow, frame as TFRecords, write shards)
runs on 256x256 images like generated ones: smooth random images (16x16 uniform noise,
bicubic upsampled to 256, plus Gaussian noise of 4 grey levels, as a camera adds). Reported:
images/s and MB/s of shard bytes written, against the same writer framing its records with
the pure-Python table CRC-32C it used before (the peer). The bytes per image of each format
are reported too; the package README extrapolates them to 1.2M images.

A third entry is the checksum alone: ``records.crc32c`` (google-crc32c, compiled) against
the pure-Python table implementation, in MB/s over 1 MB buffers.

    python tools/bench/run.py --only synthetic_writer --quick
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import Result, measure  # noqa: E402

SIZE = 256


def _table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def python_crc32c(data: bytes) -> int:
    """The pure-Python table CRC-32C (the peer)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """``[n, 256, 256, 3]`` uint8: upsampled 16x16 noise plus 4 grey levels of noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        up = Image.fromarray(small).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        noisy = np.asarray(up, np.float64) + rng.normal(0, 4, size=(SIZE, SIZE, 3))
        out[i] = noisy.clip(0, 255).astype(np.uint8)
    return out


def _write(images, labels, out, fmt, quality) -> int:
    from synthaug import imagenet_data as d

    w = d.SyntheticShardWriter(out, shard_size=len(labels), image_format=fmt, jpeg_quality=quality)
    w.write(images, labels)
    w.close()
    return sum(p.stat().st_size for p in pathlib.Path(out).glob("*.tfrecord"))


def run(quick: bool) -> list[Result]:
    from synthaug.imagenet_data import records

    n = 32 if quick else 128
    runs = 5 if quick else 7
    images = smooth_images(n)
    labels = np.arange(n) % 10
    results = []
    for fmt, quality in (("png", 95), ("jpeg", 95)):
        nbytes = {}
        with tempfile.TemporaryDirectory() as tmp:
            counter = [0]

            def ours(fmt=fmt, quality=quality, tmp=tmp, counter=counter, nbytes=nbytes):
                counter[0] += 1
                nbytes["ours"] = _write(images, labels, f"{tmp}/o{counter[0]}", fmt, quality)

            def peer(fmt=fmt, quality=quality, tmp=tmp, counter=counter, nbytes=nbytes):
                counter[0] += 1
                saved = records.crc32c
                records.crc32c = python_crc32c  # the framing's checksum in Python
                try:
                    nbytes["peer"] = _write(images, labels, f"{tmp}/p{counter[0]}", fmt, quality)
                finally:
                    records.crc32c = saved

            t_ours = measure(ours, warmup=1, runs=runs)
            t_peer = measure(peer, warmup=1, runs=runs)
        assert nbytes["ours"] == nbytes["peer"]
        per_image = nbytes["ours"] / n
        label = "png" if fmt == "png" else f"jpeg q{quality}"
        rate, peer_rate = n / t_ours.median, n / t_peer.median
        results.append(
            Result(
                name=f"synthetic_writer.{fmt}",
                metric=f"images/s written ({label}, 256x256, shards of {n})",
                value=rate,
                unit="img/s",
                peer="same writer, pure-Python CRC-32C framing",
                peer_value=peer_rate,
                ratio=rate / peer_rate,
                target=1.0,
                timing=t_ours,
                peer_timing=t_peer,
                notes=(
                    f"{rate * per_image / 1e6:.1f} MB/s of shard bytes "
                    f"(peer {peer_rate * per_image / 1e6:.1f} MB/s); {per_image / 1e3:.1f} KB "
                    f"per image on disk including framing, i.e. "
                    f"{per_image * 1.2e6 / 1e9:.0f} GB for 1.2M images; smooth random images "
                    "(16x16 noise upsampled bicubic + 4 grey levels of noise); one process."
                ),
            )
        )
    buf = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    assert records.crc32c(buf) == python_crc32c(buf)
    t_c = measure(lambda: records.crc32c(buf), warmup=3, runs=21 if quick else 51)
    t_py = measure(lambda: python_crc32c(buf), warmup=1, runs=5)
    c_rate, py_rate = 1.0 / t_c.median, 1.0 / t_py.median  # MB/s of a 1 MiB buffer
    results.append(
        Result(
            name="synthetic_writer.crc32c",
            metric="CRC-32C throughput (1 MiB buffers)",
            value=c_rate,
            unit="MiB/s",
            peer="pure-Python table CRC-32C",
            peer_value=py_rate,
            ratio=c_rate / py_rate,
            target=10.0,
            timing=t_c,
            peer_timing=t_py,
            notes="google-crc32c (compiled; hardware CRC32 instruction where available).",
        )
    )
    return results


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r.as_dict())
