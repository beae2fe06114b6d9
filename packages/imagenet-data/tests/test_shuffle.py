"""Example-level shuffling of synthetic and mixed streams.

The shard set is written class by class (10 classes x 48 examples in 8 shards of 60), the
way a generator that works through the labels writes it. Batches of the shuffled stream
must have class histograms consistent with a random order: the chi-square statistic of the
batch-by-class table stays below its 99.9% quantile under independence (81 degrees of
freedom). The same statistic of the unshuffled stream is far above it.
"""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from synthaug import imagenet_data as d

K, PER_CLASS, SHARD, BATCH = 10, 48, 60, 48
N = K * PER_CLASS
BOUND = stats.chi2.ppf(0.999, (N // BATCH - 1) * (K - 1))


@pytest.fixture(scope="module")
def sorted_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("sorted")
    labels = np.repeat(np.arange(K), PER_CLASS).astype(np.int32)
    images = np.broadcast_to(labels[:, None, None, None].astype(np.uint8), (N, 4, 4, 3))
    w = d.SyntheticShardWriter(out, shard_size=SHARD, metadata={"num_classes": K})
    w.write(images.copy(), labels)
    manifest = w.close()
    assert manifest["num_shards"] == 8
    return out


def _labels(ds) -> np.ndarray:
    return np.array([int(y) for _, y in ds.as_numpy_iterator()])


def chi_square(labels: np.ndarray) -> float:
    """Chi-square statistic of the (batch, class) contingency table of consecutive batches."""
    table = np.stack([np.bincount(b, minlength=K) for b in labels.reshape(-1, BATCH)])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def test_shuffled_batches_look_random(sorted_shards):
    for seed in range(2):
        ds = d.read_synthetic(
            sorted_shards, shuffle=True, seed=seed, shuffle_buffer=N, decode=False
        )
        labels = _labels(ds)
        assert sorted(labels) == sorted(np.repeat(np.arange(K), PER_CLASS))
        assert chi_square(labels) < BOUND, (seed, chi_square(labels), BOUND)


def test_unshuffled_stream_fails_the_bound(sorted_shards):
    assert chi_square(_labels(d.read_synthetic(sorted_shards, decode=False))) > 10 * BOUND


def test_reshuffled_each_epoch_and_reproducible(sorted_shards):
    ds = d.read_synthetic(sorted_shards, shuffle=True, seed=7, shuffle_buffer=N, decode=False)
    first, second = _labels(ds), _labels(ds)
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)
    again = d.read_synthetic(sorted_shards, shuffle=True, seed=7, shuffle_buffer=N, decode=False)
    assert np.array_equal(_labels(again), first)
    other = d.read_synthetic(sorted_shards, shuffle=True, seed=8, shuffle_buffer=N, decode=False)
    assert not np.array_equal(_labels(other), first)


def test_mixed_stream_keeps_the_ratio_and_is_shuffled(sorted_shards):
    """Ratio 0.3 over 4,800 draws: the synthetic fraction stays within 0.03 (3.6 standard
    deviations of a binomial fraction, sqrt(0.3 * 0.7 / 4800) = 0.0066), and so does every
    tenth of the stream within 0.09; the synthetic part's batches look random too."""
    real = tf.data.Dataset.from_tensor_slices(([b"real"] * 200, np.full(200, K, np.int32)))
    syn = d.read_synthetic(sorted_shards, shuffle=True, seed=1, shuffle_buffer=N, decode=False)
    mixed, rep = d.mix(real, syn, ratio=0.3, seed=2, with_source=True, shuffle_buffer=256)
    assert rep.synthetic_fraction == 0.3
    flags, labels = [], []
    for _, y, is_syn in mixed.take(4800).as_numpy_iterator():
        flags.append(bool(is_syn))
        labels.append(int(y))
    flags, labels = np.array(flags), np.array(labels)
    assert abs(flags.mean() - 0.3) < 0.03
    assert all(abs(part.mean() - 0.3) < 0.09 for part in flags.reshape(10, -1))
    assert np.array_equal(labels == K, ~flags)
    syn_labels = labels[flags][:N]
    assert chi_square(syn_labels) < BOUND


def test_mix_concat_is_shuffled_with_a_buffer():
    real = tf.data.Dataset.from_tensor_slices(
        (np.zeros((240, 2, 2, 3), np.uint8), np.zeros(240, np.int32))
    )
    syn = tf.data.Dataset.from_tensor_slices(
        (np.ones((240, 2, 2, 3), np.uint8), np.ones(240, np.int32))
    )
    plain, _ = d.mix(real, syn)
    mixed, _ = d.mix(real, syn, seed=0, shuffle_buffer=480)
    a, b = _labels(plain), _labels(mixed)
    assert a.tolist() == [0] * 240 + [1] * 240
    assert sorted(b) == sorted(a)
    # each batch of 48 holds both sources in about equal parts (a sorted stream holds one)
    assert all(10 <= part.sum() <= 38 for part in b.reshape(-1, 48))
    with pytest.raises(ValueError, match="shuffle_buffer"):
        d.mix(real, syn, shuffle_buffer=-1)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        d.read_synthetic("unused", shuffle_buffer=1.5)
