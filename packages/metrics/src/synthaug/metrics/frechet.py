"""The Fréchet distance between two Gaussians, exact and fast.

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)

pytorch-fid and the TF reference take ``scipy.linalg.sqrtm(S1 @ S2)``: a Schur decomposition of
a non-symmetric matrix, slow (minutes at d = 2048) and fragile when the covariances are singular
(complex parts, NaN). Here the trace term comes from one symmetric eigenvalue problem: for any
factor S1 = A Aᵀ the matrix S1 S2 has the same non-zero eigenvalues as the symmetric positive
semi-definite Aᵀ S2 A, so

    tr((S1 S2)^½) = Σ √λ_i(Aᵀ S2 A),

and only eigenvalues are needed, never eigenvectors. The factor is

* the Cholesky factor L (``dpotrf``, d³/3 flops) when S1 is clearly positive definite; then
  Lᵀ S2 L is formed by LAPACK's ``dsygst`` (the reduction of the generalized problem
  ``S2 S1 x = λ x``, d³ flops, using the symmetry of S2), and its eigenvalues by ``dsyevd``
  without vectors (blocked tridiagonalization, 4d³/3 flops);
* otherwise the rank-revealing pivoted Cholesky factor of the semi-definite S1 (``dpstrf``:
  S1 = P L Lᵀ Pᵀ), keeping its first r = rank(S1) columns, so that the eigenvalue problem is
  only r x r (r <= n - 1 for a covariance of n < d samples).

Eigenvalues below the round-off level of the matrix (``d · eps · λ_max``, including the tiny
negative ones) are exact zeros and are set to zero, so rank-deficient inputs give the exact
answer instead of noise or NaN. Everything is float64 LAPACK.

On a CPU shared with other work, multi-threaded OpenBLAS can be many times slower than one
thread in these factorizations (its threads wait for each other); ``blas_threads`` (default 1)
sets the BLAS threads for the duration of the call (through ``threadpoolctl``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.linalg.lapack as lapack

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
    return mu, sigma


def _symmetric_fortran(s: np.ndarray) -> np.ndarray:
    """(s + sᵀ) / 2 as a new Fortran-ordered array (LAPACK takes it without another copy)."""
    out = np.add(s, s.T, order="F")
    out *= 0.5
    return out


def _sum_sqrt_eigenvalues(m: np.ndarray) -> float:
    """Σ √λ_i of the symmetric PSD matrix whose lower triangle is ``m`` (Fortran order, consumed).

    Eigenvalues at the round-off level (|λ| <= n · eps · λ_max) are exact zeros of a singular
    matrix and count as 0.
    """
    if m.shape[0] == 0:
        return 0.0
    n = m.shape[0]
    # The wrapper's default workspace (2n + 1) forces LAPACK's unblocked tridiagonalization,
    # about twice as slow at d = 2048 as the blocked one the workspace query asks for.
    lwork, liwork, info = lapack.dsyevd_lwork(n, compute_v=0, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevd workspace query failed with info={info}")
    w, _, info = lapack.dsyevd(
        m, compute_v=0, lower=1, lwork=int(lwork), liwork=int(liwork), overwrite_a=1
    )
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevd failed with info={info}")
    tol = n * _EPS * max(float(np.max(w)), 0.0)
    return float(np.sum(np.sqrt(np.where(w > tol, w, 0.0))))


def _cholesky_route(s1: np.ndarray, s2: np.ndarray) -> float | None:
    """S1 = L Lᵀ clearly positive definite: Σ √λ(Lᵀ S2 L) via dsygst; None otherwise.

    ``s2`` (Fortran order) is overwritten when a value is returned, left as is for None.
    """
    d = s1.shape[0]
    scale = float(np.max(np.diag(s1)))
    if scale <= 0.0:
        return None
    chol, info = lapack.dpotrf(s1, lower=1, clean=1, overwrite_a=0)
    if info != 0:
        return None
    pivots = np.diag(chol) ** 2
    if not np.all(np.isfinite(pivots)) or float(np.min(pivots)) <= 1e3 * d * _EPS * scale:
        return None  # numerically singular: the pivoted route drops its null space exactly
    # itype=2: lower triangle of Lᵀ S2 L, where S1 = L Lᵀ (the problem S2 S1 x = λ x).
    m, info = lapack.dsygst(s2, chol, itype=2, lower=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsygst failed with info={info}")
    return _sum_sqrt_eigenvalues(m)


def _pivoted_route(s1: np.ndarray, s2: np.ndarray) -> float:
    """S1 = P L Lᵀ Pᵀ of rank r (pivoted Cholesky): Σ √λ of the r x r matrix Aᵀ S2 A."""
    c, piv, rank, info = lapack.dpstrf(s1, lower=1, overwrite_a=0)
    if info < 0:
        raise np.linalg.LinAlgError(f"dpstrf failed with info={info}")
    if rank == 0:
        return 0.0
    perm = piv - 1  # LAPACK pivots are 1-based
    factor = np.tril(c[:, :rank])  # A = P L[:, :r]; the strict upper part of c is not L
    s2p = s2[np.ix_(perm, perm)]
    m = factor.T @ (s2p @ factor)
    return _sum_sqrt_eigenvalues(_symmetric_fortran(m))


_CONTROLLER = None


def _blas_limits(threads: int | None):
    """A context that sets the BLAS threads (a cached controller: no library scan per call)."""
    global _CONTROLLER
    if threads is None:
        return contextlib.nullcontext()
    if threads < 1:
        raise ValueError(f"blas_threads must be None or >= 1, got {threads}")
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a declared dependency
            return contextlib.nullcontext()
        _CONTROLLER = ThreadpoolController()  # numpy's and scipy's BLAS are loaded by now
    return _CONTROLLER.limit(limits=threads, user_api="blas")


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, *, blas_threads: int | None = 1):
    """tr((sigma1 @ sigma2)^½) for symmetric positive semi-definite matrices, in float64.

    A clearly positive-definite ``sigma1`` is factored by Cholesky (S1 = L Lᵀ, then the
    eigenvalues of Lᵀ S2 L); otherwise by the rank-revealing pivoted Cholesky factorization
    (its first rank(S1) columns). Both give the eigenvalues of S1 S2 through a symmetric matrix.

    Args:
      sigma1: [d, d] covariance.
      sigma2: [d, d] covariance.
      blas_threads: BLAS threads for the factorizations (None: leave the current setting).

    Returns:
      The trace of the principal square root of ``sigma1 @ sigma2`` (a real number >= 0).
    """
    sigma1 = np.asarray(sigma1, dtype=np.float64)
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    if sigma1.ndim != 2 or sigma1.shape != sigma2.shape or sigma1.shape[0] != sigma1.shape[1]:
        raise ValueError(
            "sigma1 and sigma2 must be square matrices of one shape, got "
            f"{sigma1.shape}, {sigma2.shape}"
        )
    if sigma1.shape[0] == 0:
        return 0.0
    s1, s2 = _symmetric_fortran(sigma1), _symmetric_fortran(sigma2)  # copies the routes may use
    with _blas_limits(blas_threads):
        fast = _cholesky_route(s1, s2)
        if fast is not None:
            return fast
        return _pivoted_route(s1, s2)


def frechet_distance(mu1, sigma1, mu2, sigma2, *, blas_threads: int | None = 1) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception pool3).

    Args:
      mu1: [d] mean of the first set of features.
      sigma1: [d, d] covariance of the first set (e.g. ``RunningStats.cov``).
      mu2: [d] mean of the second set.
      sigma2: [d, d] covariance of the second set.
      blas_threads: BLAS threads for the factorizations (None: leave the current setting).

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
    tr_covmean = trace_sqrt_product(sigma1, sigma2, blas_threads=blas_threads)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)
