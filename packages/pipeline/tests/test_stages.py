"""Stage logic that needs no trained model: plans, host splits, batches, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.pipeline import config as config_lib
from synthaug.pipeline.classes import class_names, resolve_classes
from synthaug.pipeline.errors import ConfigError, MissingPathError, UnknownClassError
from synthaug.pipeline.finetune import check_finetune, make_batches
from synthaug.pipeline.sample import check_sample, host_range, label_plan, to_uint8


def test_label_plan_is_class_balanced_and_interleaved():
    plan = label_plan([3, 5, 7], 4)
    assert plan.tolist() == [3, 5, 7] * 4
    # Every prefix is within one image of balanced; a longer plan extends a shorter one.
    assert label_plan([3, 5, 7], 9)[: len(plan)].tolist() == plan.tolist()


@pytest.mark.parametrize(
    "total, shard, hosts", [(100, 10, 1), (100, 10, 3), (95, 10, 4), (7, 5, 4)]
)
def test_host_ranges_partition_the_set_on_shard_boundaries(total, shard, hosts):
    ranges = [host_range(total, shard, p, hosts) for p in range(hosts)]
    covered = np.concatenate([np.arange(a, b) for a, b in ranges])
    assert covered.tolist() == list(range(total))
    for a, b in ranges:
        assert a == b or (a % shard == 0 and (b == total or b % shard == 0))


def test_to_uint8_rounds_and_clips():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 3.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255]


def test_classes_digits_and_imagenet():
    assert class_names("digits")[:2] == ("zero", "one")
    assert resolve_classes("digits", ()) == list(range(10))
    assert resolve_classes("digits", ("three", "one")) == [3, 1]
    with pytest.raises(UnknownClassError, match="eleven"):
        resolve_classes("digits", ("eleven",))
    assert len(class_names("imagenet")) == 1000
    assert resolve_classes("imagenet", ("tench",)) == [0]
    with pytest.raises(UnknownClassError, match="unicorn"):
        resolve_classes("imagenet", ("unicorn",))
    with pytest.raises(ConfigError, match="more than once"):
        resolve_classes("digits", ("one", "one"))


def test_make_batches_is_a_function_of_the_step():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(10) % 3
    emb = rng.normal(size=(3, 2, 5)).astype(np.float32)
    mask = np.ones((3, 2), bool)
    f = make_batches(images, labels, emb, mask, batch_size=4, seed=1)
    g = make_batches(images, labels, emb, mask, batch_size=4, seed=1)
    for step in (0, 1, 5, 2, 0):
        a, b = f(step), g(step)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    b0 = f(0)
    assert b0["image"].shape == (4, 4, 4, 3) and b0["image"].dtype == np.float32
    assert -1.0 <= b0["image"].min() and b0["image"].max() <= 1.0
    # The text embedding of each example is its class's.
    idx = [
        int(np.flatnonzero((images.astype(np.float32) / 127.5 - 1 == im).all(axis=(1, 2, 3)))[0])
        for im in b0["image"]
    ]
    np.testing.assert_array_equal(b0["text_emb"], emb[labels[idx]])
    # An epoch (two steps of 4 out of 10 images) visits distinct images.
    seen = [tuple(im.ravel()) for s in (0, 1) for im in f(s)["image"]]
    assert len(set(seen)) == 8
    with pytest.raises(ConfigError, match="batch_size"):
        make_batches(images, labels, emb, mask, batch_size=11, seed=0)


def test_sample_checks_inputs_before_writing(tmp_path):
    cfg = config_lib.load_config(
        "demo/sample",
        "sample",
        [
            f"out_dir={tmp_path}/out",
            f"base.checkpoint={tmp_path}/missing",
            f"sr1.checkpoint={tmp_path}/missing",
        ],
    )
    with pytest.raises(MissingPathError, match="base checkpoint"):
        check_sample(cfg)
    cfg = config_lib.load_config("demo/sample", "sample", ["classes=zero,ten"])
    with pytest.raises(UnknownClassError, match="ten"):
        check_sample(cfg)
    cfg = config_lib.load_config("demo/sample", "sample", ["base.enabled=false"])
    with pytest.raises(ConfigError, match="base stage"):
        check_sample(cfg)
    assert list(tmp_path.iterdir()) == []


def test_finetune_checks_inputs(tmp_path):
    cfg = config_lib.load_config(
        "paper/base64_finetune",
        "finetune",
        [f"data.data_dir={tmp_path}/nodata", f"workdir={tmp_path}/w"],
    )
    with pytest.raises(MissingPathError, match="nodata"):
        check_finetune(cfg)
    cfg = config_lib.load_config(
        "demo/finetune:sr",
        "finetune",
        [f"init_checkpoint={tmp_path}/noinit", f"workdir={tmp_path}/w"],
    )
    with pytest.raises(MissingPathError, match="noinit"):
        check_finetune(cfg)
    assert list(tmp_path.iterdir()) == []


def test_feature_frechet_distance():
    from synthaug.pipeline.demo import feature_frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert feature_frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 0.0, 0.0, 4.0])
    assert feature_frechet_distance(a, a + shift) == pytest.approx(25.0, rel=1e-6)
    b = rng.normal(size=(500, 4)) * 2.0
    assert feature_frechet_distance(a, b) > 1.0


def test_demo_classifier_sets_repeat_whole_permutations():
    from synthaug.pipeline.demo import _repeat_to

    images = np.arange(7 * 4).reshape(7, 2, 2)
    labels = np.arange(7)
    x, y = _repeat_to(images, labels, 20, seed=0)
    assert x.shape == (20, 2, 2) and len(y) == 20
    np.testing.assert_array_equal(x[:, 0, 0] // 4, y)  # images stay with their labels
    for k in range(2):  # every pass shows each example exactly once
        assert sorted(y[7 * k : 7 * (k + 1)]) == list(range(7))
    assert len(set(y[14:])) == 6  # the cut third pass has no repeats
    x2, y2 = _repeat_to(images, labels, 20, seed=0)
    np.testing.assert_array_equal(y2, y)  # seeded
