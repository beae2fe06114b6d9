import tracemalloc

import numpy as np
import pytest

from synthaug.metrics import RunningStats


def _data(n=257, d=9, seed=0):
    rs = np.random.RandomState(seed)
    return rs.standard_normal((n, d)) @ rs.standard_normal((d, d)) * 3.0 + 100.0


@pytest.mark.parametrize("batch", [1, 7, 64, 257])
def test_matches_numpy_over_batches(batch):
    x = _data()
    s = RunningStats()
    for lo in range(0, x.shape[0], batch):
        s.update(x[lo : lo + batch].astype(np.float32 if batch == 64 else np.float64))
    xf = x.astype(np.float32).astype(np.float64) if batch == 64 else x
    assert s.count == 257 and s.dim == 9
    np.testing.assert_allclose(s.mean, xf.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(xf, rowvar=False), rtol=1e-10, atol=1e-10)
    assert np.array_equal(s.cov, s.cov.T)


def test_merge_equals_single_pass_and_state_roundtrip():
    x = _data(n=300, d=5, seed=1)
    parts = [x[:10], x[10:11], x[11:200], x[200:]]
    hosts = [RunningStats().update(p) for p in parts]
    # Ship one through its state dict, as an all-gather would.
    hosts[2] = RunningStats.from_state_dict(hosts[2].state_dict())
    total = RunningStats()
    for h in hosts:
        total.merge(h)
    total.merge(RunningStats(5))  # merging an empty accumulator changes nothing
    np.testing.assert_allclose(total.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(total.cov, np.cov(x, rowvar=False), rtol=1e-10)
    assert total.count == 300


def test_float64_accumulation_beats_float32_cancellation():
    # Large offset, small spread: a float32 E[xx^T] - mu mu^T would lose every digit.
    rs = np.random.RandomState(2)
    x = 1e4 + rs.standard_normal((4000, 3))
    s = RunningStats()
    for lo in range(0, 4000, 500):
        s.update(x[lo : lo + 500])
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_memory_does_not_grow_with_count():
    d, b = 128, 256
    rs = np.random.RandomState(3)
    batch = rs.standard_normal((b, d))

    def peak(n_batches):
        s = RunningStats()
        s.update(batch)  # allocate the accumulators before measuring
        tracemalloc.start()
        for _ in range(n_batches):
            s.update(batch)
        _, p = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return p

    small, large = peak(4), peak(40)
    assert large < 1.2 * small + 4096
    # and the accumulator itself is O(d^2): [d] mean + [d, d] M2 in float64
    assert small < 4 * (d * d * 8) + 4 * b * d * 8


def test_errors():
    s = RunningStats()
    with pytest.raises(ValueError, match="at least one"):
        _ = s.mean
    s.update(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = s.cov
    with pytest.raises(ValueError, match="dimension 3, expected 4"):
        s.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        s.update(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        s.update(np.full((2, 4), np.nan))
    with pytest.raises(KeyError, match="m2"):
        RunningStats.from_state_dict({"count": 1, "mean": np.zeros(4)})
    with pytest.raises(ValueError, match="no features"):
        RunningStats().state_dict()
