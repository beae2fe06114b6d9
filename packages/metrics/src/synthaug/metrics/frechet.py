"""The Fréchet distance between two Gaussians, exact and fast.

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)

pytorch-fid and the TF reference take ``scipy.linalg.sqrtm(S1 @ S2)``: a Schur decomposition of
a non-symmetric matrix, slow (minutes at d = 2048) and fragile when the covariances are singular
(complex parts, NaN). Here the trace term comes from symmetric eigendecompositions only:
with S1 = V diag(w) Vᵀ and A = V diag(√w), the matrix S1 S2 has the same eigenvalues as the
symmetric positive semi-definite Aᵀ S2 A, so

    tr((S1 S2)^½) = Σ √λ_i(Aᵀ S2 A).

Eigenvalues below the round-off level of a matrix (``d · eps · λ_max``) are exact zeros of a
rank-deficient covariance and are set to zero, so rank-deficient inputs (fewer samples than
dimensions) give the exact answer instead of noise or NaN.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.linalg.blas as blas

__all__ = ["frechet_distance", "trace_sqrt_product"]

_EPS = float(np.finfo(np.float64).eps)


def _check(mu, sigma, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu{which} must be a vector [d], got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"sigma{which} must be [{d}, {d}] to match mu{which}, got {sigma.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"mu{which}/sigma{which} contain NaN or infinite values")
    scale = float(np.max(np.abs(sigma))) if sigma.size else 0.0
    if float(np.max(np.abs(sigma - sigma.T), initial=0.0)) > 1e-6 * scale:
        raise ValueError(f"sigma{which} must be a symmetric covariance matrix")
    return mu, 0.5 * (sigma + sigma.T)


def _psd_eigh(s: np.ndarray, *, vectors: bool):
    if vectors:
        w, v = scipy.linalg.eigh(s, driver="evr", check_finite=False)
    else:
        w = scipy.linalg.eigh(s, eigvals_only=True, driver="evd", check_finite=False)
        v = None
    tol = s.shape[0] * np.finfo(np.float64).eps * max(float(np.max(np.abs(w), initial=0.0)), 0.0)
    w = np.where(w > tol, w, 0.0)
    return w, v


def _trace_sqrt_cholesky(sigma1: np.ndarray, sigma2: np.ndarray) -> float | None:
    """The fast path for a clearly positive-definite sigma1 (S1 = L Lᵀ); None otherwise."""
    d = sigma1.shape[0]
    try:
        chol = scipy.linalg.cholesky(sigma1, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    pivots = np.diag(chol) ** 2
    scale = float(np.max(np.diag(sigma1)))
    if not np.all(np.isfinite(chol)) or float(np.min(pivots)) <= 1e3 * d * _EPS * scale:
        return None  # numerically singular: the eigendecomposition path drops its null space
    # M = Lᵀ S2 L with two triangular products (half the flops of general matmuls).
    t = blas.dtrmm(1.0, chol, sigma2, side=1, lower=1)
    m = blas.dtrmm(1.0, chol, t, side=0, lower=1, trans_a=1)
    lam, _ = _psd_eigh(0.5 * (m + m.T), vectors=False)
    return float(np.sum(np.sqrt(lam)))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 @ sigma2)^½) for symmetric positive semi-definite matrices, in float64.

    A clearly positive-definite ``sigma1`` is factored by Cholesky (S1 = L Lᵀ, then the
    eigenvalues of Lᵀ S2 L); otherwise by its eigendecomposition with the round-off null space
    dropped. Both give the eigenvalues of S1 S2 through a symmetric matrix.

    Args:
      sigma1: [d, d] covariance.
      sigma2: [d, d] covariance.

    Returns:
      The trace of the principal square root of ``sigma1 @ sigma2`` (a real number >= 0).
    """
    fast = _trace_sqrt_cholesky(sigma1, sigma2)
    if fast is not None:
        return fast
    w, v = _psd_eigh(sigma1, vectors=True)
    keep = w > 0
    if not np.any(keep):
        return 0.0
    a = v[:, keep] * np.sqrt(w[keep])[None, :]
    m = a.T @ (sigma2 @ a)
    m = 0.5 * (m + m.T)
    lam, _ = _psd_eigh(m, vectors=False)
    return float(np.sum(np.sqrt(lam)))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception pool3).

    Args:
      mu1: [d] mean of the first set of features.
      sigma1: [d, d] covariance of the first set (e.g. ``RunningStats.cov``).
      mu2: [d] mean of the second set.
      sigma2: [d, d] covariance of the second set.

    Returns:
      The squared Fréchet distance as a Python float (>= 0; round-off below zero is clamped).

    Raises:
      ValueError: shapes do not match, values are not finite, or a covariance is not symmetric.
    """
    mu1, sigma1 = _check(mu1, sigma1, "1")
    mu2, sigma2 = _check(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 differ in dimension: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)
