import numpy as np
import pytest
import scipy.linalg

from synthaug.metrics import RunningStats, frechet_distance, trace_sqrt_product


def _stats(x):
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _exact_from_features(x1, x2):
    """Float64 reference from the features: tr((S1 S2)^1/2) = ||A^T B||_* with S = A A^T."""
    m1, m2 = x1.mean(axis=0), x2.mean(axis=0)
    a = (x1 - m1).T / np.sqrt(len(x1) - 1)
    b = (x2 - m2).T / np.sqrt(len(x2) - 1)
    tr = np.linalg.svd(a.T @ b, compute_uv=False).sum()
    s1, s2 = a @ a.T, b @ b.T
    return float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def _sqrtm_reference(m1, s1, m2, s2):
    """The pytorch-fid computation (scipy.linalg.sqrtm of the product), float64."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_full_rank_matches_sqrtm_reference():
    rs = np.random.RandomState(0)
    d = 48
    x1 = rs.standard_normal((400, d)) @ rs.standard_normal((d, d)) / np.sqrt(d)
    x2 = 1.3 * rs.standard_normal((500, d)) + 0.2
    m1, s1 = _stats(x1)
    m2, s2 = _stats(x2)
    got = frechet_distance(m1, s1, m2, s2)
    assert got == pytest.approx(_sqrtm_reference(m1, s1, m2, s2), rel=1e-6)
    assert got == pytest.approx(_exact_from_features(x1, x2), rel=1e-6)


@pytest.mark.parametrize("n1,n2", [(20, 30), (10, 10), (5, 200)])
def test_rank_deficient_is_exact(n1, n2):
    rs = np.random.RandomState(n1 + n2)
    d = 64  # n < d: singular covariances, where sqrtm gives complex parts or NaN
    x1 = rs.standard_normal((n1, d))
    x2 = 1.5 * rs.standard_normal((n2, d)) + 0.1
    m1, s1 = _stats(x1)
    m2, s2 = _stats(x2)
    got = frechet_distance(m1, s1, m2, s2)
    assert np.isfinite(got) and isinstance(got, float)
    assert got == pytest.approx(_exact_from_features(x1, x2), rel=1e-6)


def test_identical_and_scaled_gaussians():
    rs = np.random.RandomState(1)
    x = rs.standard_normal((30, 50))  # rank 29 < 50
    m, s = _stats(x)
    assert frechet_distance(m, s, m, s) == pytest.approx(0.0, abs=1e-9 * np.trace(s))
    # N(0, S) vs N(0, 4S): tr S + 4 tr S - 2 * 2 tr S = tr S
    assert frechet_distance(m, s, m, 4 * s) == pytest.approx(np.trace(s), rel=1e-9)
    # Diagonal covariances: closed form sum (sqrt(a) - sqrt(b))^2.
    a, b = rs.uniform(0, 2, 20), rs.uniform(0, 2, 20)
    a[:5] = 0.0
    want = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 1.0
    mu2 = np.zeros(20)
    mu2[3] = 1.0
    assert frechet_distance(np.zeros(20), np.diag(a), mu2, np.diag(b)) == pytest.approx(
        want, rel=1e-9
    )


def test_with_running_stats_any_dimension():
    rs = np.random.RandomState(2)
    for d in (1, 3, 17):
        x1, x2 = rs.standard_normal((100, d)), rs.standard_normal((80, d)) + 1
        r1, r2 = RunningStats().update(x1), RunningStats().update(x2)
        got = frechet_distance(r1.mean, r1.cov, r2.mean, r2.cov)
        assert got == pytest.approx(_exact_from_features(x1, x2), rel=1e-9)


def test_trace_sqrt_product_zero_matrix():
    assert trace_sqrt_product(np.zeros((4, 4)), np.eye(4)) == 0.0


def test_bad_inputs():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="sigma1 must be"):
        frechet_distance(mu, np.eye(4), mu, s)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu, s, np.array([0, np.nan, 0]), s)
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(mu, np.triu(np.ones((3, 3))), mu, s)
    with pytest.raises(ValueError, match="differ"):
        frechet_distance(mu, s, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="vector"):
        frechet_distance(np.zeros((3, 1)), s, mu, s)
