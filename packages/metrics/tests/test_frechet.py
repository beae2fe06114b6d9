import numpy as np
import pytest
import scipy.linalg

from synthaug.metrics import (
    IndefiniteCovarianceError,
    RunningStats,
    frechet_distance,
    trace_sqrt_product,
)
from synthaug.metrics import frechet as frechet_module


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


@pytest.mark.parametrize("n1,n2", [(20, 30), (10, 10), (5, 200), (200, 5), (2, 3)])
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


def _trace_from_features(x1, x2):
    a = (x1 - x1.mean(axis=0)).T / np.sqrt(len(x1) - 1)
    b = (x2 - x2.mean(axis=0)).T / np.sqrt(len(x2) - 1)
    return float(np.linalg.svd(a.T @ b, compute_uv=False).sum())


def test_both_factorization_routes_agree_with_reference():
    rs = np.random.RandomState(3)
    d = 40
    x1 = rs.standard_normal((300, d)) * rs.uniform(0.1, 3.0, d)
    x2 = rs.standard_normal((250, d)) @ rs.standard_normal((d, d)) / np.sqrt(d)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    want = _trace_from_features(x1, x2)
    chol = frechet_module._cholesky_route(np.asfortranarray(s1), np.asfortranarray(s2))
    pivoted = frechet_module._pivoted_route(np.asfortranarray(s1), np.asfortranarray(s2))
    assert chol is not None  # full rank: the Cholesky route applies
    assert chol == pytest.approx(want, rel=1e-10)
    assert pivoted == pytest.approx(want, rel=1e-10)
    # The public functions do not modify their inputs.
    c1, c2 = s1.copy(), s2.copy()
    assert trace_sqrt_product(s1, s2) == pytest.approx(want, rel=1e-10)
    frechet_distance(np.zeros(d), s1, np.ones(d), s2)
    np.testing.assert_array_equal(s1, c1)
    np.testing.assert_array_equal(s2, c2)


def test_singular_sigma1_takes_pivoted_route():
    rs = np.random.RandomState(4)
    x1 = rs.standard_normal((12, 30))  # rank 11 < 30
    s1 = np.asfortranarray(np.cov(x1, rowvar=False))
    s2 = np.asfortranarray(np.cov(rs.standard_normal((90, 30)), rowvar=False))
    assert frechet_module._cholesky_route(s1, s2) is None


@pytest.mark.parametrize("n1,n2,d", [(100, 150, 256), (300, 80, 256), (257, 400, 256)])
def test_larger_dimensions_full_and_deficient(n1, n2, d):
    rs = np.random.RandomState(n1)
    mix = rs.standard_normal((d, d)) / np.sqrt(d)
    x1 = rs.standard_normal((n1, d)) @ mix
    x2 = 0.7 * rs.standard_normal((n2, d)) + 0.2 * rs.standard_normal((n2, d)) @ mix + 0.05
    m1, s1 = _stats(x1)
    m2, s2 = _stats(x2)
    got = frechet_distance(m1, s1, m2, s2)
    assert got == pytest.approx(_exact_from_features(x1, x2), rel=1e-6)
    assert trace_sqrt_product(s1, s2) == pytest.approx(_trace_from_features(x1, x2), rel=1e-8)


def test_ill_conditioned_full_rank():
    rs = np.random.RandomState(5)
    d = 32
    q, _ = np.linalg.qr(rs.standard_normal((d, d)))
    s1 = (q * np.logspace(0, -11, d)) @ q.T  # condition number 1e11
    s1 = 0.5 * (s1 + s1.T)
    s2 = np.cov(rs.standard_normal((100, d)), rowvar=False)
    lam = np.linalg.eigvals(s1 @ s2)
    got = trace_sqrt_product(s1, s2)
    assert got == pytest.approx(float(np.sum(np.sqrt(np.abs(lam)))), rel=1e-6)


def test_blas_threads_setting_gives_same_value():
    rs = np.random.RandomState(6)
    x1, x2 = rs.standard_normal((70, 24)), rs.standard_normal((20, 24)) * 2
    m1, s1 = _stats(x1)
    m2, s2 = _stats(x2)
    one = frechet_distance(m1, s1, m2, s2)
    assert frechet_distance(m1, s1, m2, s2, blas_threads=None) == pytest.approx(one, rel=1e-12)
    assert frechet_distance(m1, s1, m2, s2, blas_threads=2) == pytest.approx(one, rel=1e-12)
    with pytest.raises(ValueError, match="blas_threads"):
        frechet_distance(m1, s1, m2, s2, blas_threads=0)


# ------------------------------------------------------------------ indefinite covariances


def _with_negative_eigenvalue(s, value, rs):
    """``s`` plus a rank-one term that gives it the eigenvalue ``value`` < 0 (exactly)."""
    w, v = np.linalg.eigh(s)
    w = w.copy()
    w[rs.randint(len(w))] = value
    out = (v * w) @ v.T
    return 0.5 * (out + out.T)


def test_indefinite_covariances_are_an_error_not_zero():
    """Once 0.0: equal means, both covariances diag(1, -1)."""
    mu, s = np.zeros(2), np.diag([1.0, -1.0])
    with pytest.raises(IndefiniteCovarianceError, match=r"sigma1 .*most negative eigenvalue -1\b"):
        frechet_distance(mu, s, mu, s)
    with pytest.raises(IndefiniteCovarianceError, match=r"sigma1"):
        trace_sqrt_product(s, np.eye(2))


@pytest.mark.parametrize("which", [1, 2])
@pytest.mark.parametrize("n1", [200, 20])  # full rank (Cholesky route), n < d (pivoted route)
def test_the_indefinite_one_is_named_with_its_most_negative_eigenvalue(which, n1):
    rs = np.random.RandomState(7 + n1 + which)
    d = 32
    m1, s1 = _stats(rs.standard_normal((n1, d)))
    m2, s2 = _stats(rs.standard_normal((150, d)) * 1.5)
    if which == 1:
        s1 = _with_negative_eigenvalue(s1, -0.25, rs)
    else:
        s2 = _with_negative_eigenvalue(s2, -0.25, rs)
    with pytest.raises(IndefiniteCovarianceError) as err:
        frechet_distance(m1, s1, m2, s2, names=("reference ref.npz", "generated images"))
    msg = str(err.value)
    label = "sigma1 (reference ref.npz)" if which == 1 else "sigma2 (generated images)"
    assert msg.startswith(f"{label} is not a covariance matrix: it is indefinite"), msg
    assert "most negative eigenvalue -0.25 " in msg, msg
    assert "\n" not in msg


def test_sigma2_indefinite_only_where_sigma1_is_singular():
    """S2 negative on the null space of a singular S1 is found too (it changes tr S2)."""
    rs = np.random.RandomState(8)
    d = 16
    s1 = np.diag(np.r_[rs.uniform(1, 2, d - 1), 0.0])  # null space: the last axis
    s2 = np.diag(np.r_[rs.uniform(1, 2, d - 1), -0.5])
    with pytest.raises(IndefiniteCovarianceError, match=r"sigma2 .*eigenvalue -0.5 "):
        frechet_distance(np.zeros(d), s1, np.zeros(d), s2)


def test_round_off_negatives_of_singular_covariances_are_accepted():
    """Rank-deficient covariances have eigenvalues of ±round-off: no error, exact values."""
    rs = np.random.RandomState(9)
    d = 96
    x1 = rs.standard_normal((40, d)) @ rs.standard_normal((d, d)) / np.sqrt(d)
    x2 = rs.standard_normal((60, d))
    m1, s1 = _stats(x1)
    m2, s2 = _stats(x2)
    assert np.linalg.eigvalsh(s1)[0] < 0 and np.linalg.eigvalsh(s2)[0] < 0  # round-off
    want = _exact_from_features(x1, x2)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(m2, s2, m1, s1) == pytest.approx(want, rel=1e-6)
    # Stored in float32 (as some statistics files are): float32 round-off is accepted too.
    got32 = frechet_distance(m1, s1.astype(np.float32), m2, s2.astype(np.float32))
    assert got32 == pytest.approx(want, rel=1e-4)
