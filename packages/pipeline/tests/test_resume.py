"""A resumed input stream yields exactly the batches of an uninterrupted one, without
re-reading those before the resume point (resume.CheckpointedStream, epoch by epoch as
train-classifier streams)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data
from synthaug.pipeline.resume import CheckpointedStream


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    for label in range(3):
        d = root / "train" / data.label_to_wnid(label)
        d.mkdir(parents=True)
        for i in range(6):
            img = np.full((10, 12, 3), 40 * label + 5 * i, np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            (d / f"{label}_{i}.png").write_bytes(buf.getvalue())
    return root


def test_epoch_stream_resumes_mid_epoch(folder, tmp_path):
    import tensorflow as tf

    def epoch_dataset(epoch):
        ds = data.from_folders(folder, "train", shuffle=True, seed=100 + epoch)
        ds = ds.map(lambda x, y: y).batch(3, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def make(work):
        return CheckpointedStream(
            epoch_dataset,
            work,
            save_every=4,
            keep=3,
            convert=lambda b: b.numpy(),
            steps_per_epoch=6,
        )

    ref = make(tmp_path / "ref")
    want = [ref(i) for i in range(18)]
    assert sorted(np.concatenate(want[:6]).tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    run = make(tmp_path / "run")
    for i in range(11):
        run(i)
    again = make(tmp_path / "run")
    got = [again(i) for i in range(8, 18)]  # step 8 is batch 2 of epoch 1
    assert again.report() == {"resumed_from": 8, "replayed_batches": 0, "batches_read": 10}
    for i, batch in zip(range(8, 18), got, strict=True):
        np.testing.assert_array_equal(batch, want[i], err_msg=f"step {i}")
