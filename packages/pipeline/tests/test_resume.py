"""A resumed input stream yields exactly the batches of an uninterrupted one, without
re-reading those before the resume point (resume.CheckpointedStream, epoch by epoch as
train-classifier and finetune stream)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from synthaug import imagenet_data as data
from synthaug.pipeline import config as config_lib
from synthaug.pipeline.finetune import _imagenet_batches
from synthaug.pipeline.models import diffusion_config
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


def _finetune_stream(folder, work):
    cfg = config_lib.load_config(
        "demo/finetune:base",
        "finetune",
        [
            "data.source=imagenet_folder",
            f"data.data_dir={folder}",
            "data.split=train",
            "train.save_every=3",
            "train.keep=2",
            "train.batch_size=4",  # 18 images: 4 steps an epoch, 2 images left over
            f"workdir={work}",
        ],
    )
    return _imagenet_batches(cfg, diffusion_config(cfg), work)


@pytest.mark.parametrize("kill_after", [8, 11])  # resumed at 6 and at 9
def test_finetune_stream_resumes_without_replay(folder, tmp_path, kill_after):
    ref = _finetune_stream(folder, tmp_path / "ref")
    want = [ref(i) for i in range(18)]
    # every epoch (4 steps) is 16 distinct images of the 18, in an order of its own
    for e in range(4):
        names = np.concatenate([want[i]["image"].reshape(4, -1) for i in range(4 * e, 4 * e + 4)])
        assert len({r.tobytes() for r in names}) == 16, e
    assert not np.array_equal(want[0]["image"], want[4]["image"])
    run = _finetune_stream(folder, tmp_path / "run")
    for i in range(kill_after):  # steps 0 .. kill_after - 1; then a kill
        run(i)
    k = max(s for s in run.saved_steps() if s <= kill_after)  # the newest model checkpoint
    again = _finetune_stream(folder, tmp_path / "run")  # a new process: nothing in memory
    got = {i: again(i) for i in [k, *range(k, 18)]}  # the loop's shape probe, then k .. 17
    # positioned at k from the saved state: the batches read are those trained on, whatever k
    assert again.report() == {"resumed_from": k, "replayed_batches": 0, "batches_read": 18 - k}
    for i, batch in got.items():
        for key in ("image", "labels"):
            np.testing.assert_array_equal(batch[key], want[i][key], err_msg=f"step {i} {key}")
    # the states of the last keep + 1 (2 + 1) positions are kept, with the epoch layout
    assert again.saved_steps() == [12, 15, 18]
    layout = tmp_path / "run" / "input_state" / "process-00000-of-00001" / "layout.json"
    assert layout.is_file()


def test_finetune_stream_makes_up_unreadable_images_and_resumes(tmp_path):
    """Two of 18 files are truncated: every epoch still has its 3 full batches of 6 (the
    missing images come from a second order of the share), resumed in the last of them."""
    folder = tmp_path / "imagenet"
    for label in range(2):
        d = folder / "train" / data.label_to_wnid(label)
        d.mkdir(parents=True)
        for i in range(9):
            img = np.full((10, 12, 3), 100 * label + 9 * i, np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            raw = buf.getvalue()
            (d / f"{label}_{i}.png").write_bytes(raw[: len(raw) // 2] if i == 4 else raw)

    def stream(work):
        cfg = config_lib.load_config(
            "demo/finetune:base",
            "finetune",
            [
                "data.source=imagenet_folder",
                f"data.data_dir={folder}",
                "train.save_every=2",
                "train.keep=2",
                "train.batch_size=6",
                f"workdir={work}",
            ],
        )
        return _imagenet_batches(cfg, diffusion_config(cfg), work)

    ref = stream(tmp_path / "ref")
    want = [ref(i) for i in range(12)]  # 4 epochs of 3 steps
    for e in range(4):
        pixels = np.concatenate([want[i]["image"][:, 0, 0, 0] for i in range(3 * e, 3 * e + 3)])
        assert len(pixels) == 18 and len(set(pixels.tolist())) == 16  # 16 readable, 2 again
    run = stream(tmp_path / "run")
    for i in range(9):
        run(i)
    again = stream(tmp_path / "run")
    got = {i: again(i) for i in [8, *range(8, 12)]}  # step 8: the last batch of epoch 2
    assert again.report() == {"resumed_from": 8, "replayed_batches": 0, "batches_read": 4}
    for i, batch in got.items():
        for key in ("image", "labels"):
            np.testing.assert_array_equal(batch[key], want[i][key], err_msg=f"step {i} {key}")
