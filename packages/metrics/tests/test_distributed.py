"""Sharded FID features on 4 simulated CPU devices against 1 device, and the exact merge of
per-process statistics."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from synthaug.metrics import (
    RunningStats,
    fid_inception_torch_shapes,
    load_fid_inception,
    make_feature_fn,
    random_state_dict,
)
from synthaug.metrics import distributed as dist


@pytest.fixture(scope="module")
def params():
    return load_fid_inception(random_state_dict(fid_inception_torch_shapes(), seed=11))


@pytest.fixture(scope="module")
def images():
    rs = np.random.RandomState(0)
    return rs.randint(0, 256, (11, 24, 20, 3)).astype(np.uint8)


def _mesh(n):
    assert len(jax.devices()) >= 4, "conftest sets 4 simulated CPU devices"
    return Mesh(np.array(jax.devices()[:n]).reshape(n), ("data",))


@pytest.fixture(scope="module")
def four_devices(params, images):
    """The sharded feature function on 4 devices, and its statistics over the 11 images."""
    fn = dist.make_sharded_feature_fn(params, _mesh(4), batch_size=8, image_shape=(24, 20))
    # Batches of 5 and 6 are re-cut into steps of 8 and 3 (the 3 padded to 8).
    stats, logits = dist.streaming_statistics([images[:5], images[5:]], fn, keep_logits=True)
    return fn, stats, logits


def test_sharded_features_on_4_devices_equal_1_device(params, images, four_devices):
    """4 devices, batch sharded, against the one-device feature function."""
    ref_pool3, ref_logits = make_feature_fn(params, batch_size=16)(images)
    fn, stats, logits = four_devices
    assert fn.local_batch == 8
    assert logits.shape == (11, 1008)
    np.testing.assert_allclose(logits, np.asarray(ref_logits), rtol=1e-5, atol=1e-4)
    # The statistics are those of the 11 images' features (padding rows dropped).
    single = RunningStats().update(np.asarray(ref_pool3))
    assert stats.count == 11
    np.testing.assert_allclose(stats.mean, single.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.cov, single.cov, rtol=1e-4, atol=1e-7)
    pool3, _ = fn(images[8:])
    np.testing.assert_allclose(pool3, np.asarray(ref_pool3)[8:], rtol=1e-5, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(four_devices, tmp_path):
    """2 processes x 2 devices with 7 and 4 images: the merged statistics equal this
    process's 4-device run over all 11 images, and are the same bits on both processes."""
    child = pathlib.Path(__file__).with_name("multiprocess_child.py")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(child), str(pid), str(port), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    got = [dict(np.load(tmp_path / f"stats_{pid}.npz")) for pid in (0, 1)]
    for k in ("count", "mean", "cov"):
        assert np.array_equal(got[0][k], got[1][k]), k  # identical on every process
    _, one, logits = four_devices
    assert int(got[0]["count"]) == one.count == 11
    np.testing.assert_allclose(got[0]["mean"], one.mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[0]["cov"], one.cov, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        np.concatenate([got[0]["logits"], got[1]["logits"]]), logits, rtol=1e-5, atol=1e-5
    )


def test_sharded_feature_fn_rejects_bad_sizes(params):
    mesh = _mesh(4)
    with pytest.raises(ValueError, match="multiple of the 4 devices"):
        dist.make_sharded_feature_fn(params, mesh, batch_size=6, image_shape=(8, 8))
    with pytest.raises(ValueError, match="not axes of the mesh"):
        dist.make_sharded_feature_fn(
            params, mesh, batch_size=8, image_shape=(8, 8), data_axes=("batch",)
        )
    fn = dist.make_sharded_feature_fn(params, mesh, batch_size=4, image_shape=(8, 8))
    with pytest.raises(ValueError, match=r"\[n, 8, 8, 3\]"):
        fn(np.zeros((2, 9, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="at most its local batch 4"):
        fn(np.zeros((5, 8, 8, 3), np.uint8))


def _features(n, d=24, seed=0):
    rs = np.random.RandomState(seed)
    return rs.standard_normal((n, d)) @ rs.standard_normal((d, d)) * 3.0 + 50.0


@pytest.mark.parametrize("sizes", [(300, 257, 1, 0), (1000,), (0, 5, 0), (2, 2, 2, 2, 2, 2, 2, 2)])
def test_merged_process_statistics_equal_a_single_pass(sizes):
    """Each simulated process encodes its float64 accumulator as an all-gather sends it; the
    merge equals one pass over all features to float64 round-off, and is bit-identical
    whichever process does it."""
    x = _features(sum(sizes))
    bounds = np.cumsum((0,) + sizes)
    parts = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    encoded = [dist._encode(RunningStats(24).update(p), 24) for p in parts]
    assert len({e.shape for e in encoded}) == 1  # empty processes send the same shape
    gathered = np.stack(encoded)
    merged = dist._decode_and_merge(gathered, 24)
    again = dist._decode_and_merge(gathered.copy(), 24)
    single = RunningStats().update(x)
    assert merged.count == single.count == len(x)
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.cov, single.cov, rtol=1e-11)
    np.testing.assert_allclose(merged.cov, np.cov(x, rowvar=False), rtol=1e-11)
    assert np.array_equal(merged.cov, again.cov) and np.array_equal(merged.mean, again.mean)


def test_encoding_is_bit_exact():
    stats = RunningStats().update(_features(37, d=5, seed=3))
    back = dist._decode_and_merge(dist._encode(stats, 5)[None], 5)
    assert back.count == stats.count
    assert np.array_equal(back.mean, stats.mean)
    assert np.array_equal(back.cov, stats.cov)


def test_one_process_allgather_is_the_identity():
    stats = RunningStats().update(_features(10, d=3))
    assert dist.allgather_stats(stats) is stats
