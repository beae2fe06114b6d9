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

A covariance must be positive semi-definite. One with a negative eigenvalue beyond round-off
(a corrupt statistics file, statistics of too few samples merged wrongly, a matrix that is not
a covariance) raises :class:`IndefiniteCovarianceError` naming the statistics and the most
negative eigenvalue, instead of a meaningless number. The checks cost no extra factorization
on the common route: when S1 = L Lᵀ is positive definite, Lᵀ S2 L has the inertia of S2
(Sylvester's law), so its eigenvalues, which are computed anyway, show an indefinite S2. On
the pivoted route, the part of S1 that the rank-r factor leaves out must be zero up to
round-off (it is the Schur complement, positive semi-definite with a tiny diagonal when S1 is),
and S2 is checked by its own Cholesky or pivoted Cholesky factorization.

On a CPU shared with other work, multi-threaded OpenBLAS can be many times slower than one
thread in these factorizations (its threads wait for each other); ``blas_threads`` (default 1)
sets the BLAS threads for the duration of the call (through ``threadpoolctl``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.linalg.lapack as lapack

__all__ = ["IndefiniteCovarianceError", "frechet_distance", "trace_sqrt_product"]

_EPS = float(np.finfo(np.float64).eps)


class IndefiniteCovarianceError(ValueError):
    """A covariance matrix has a negative eigenvalue beyond round-off."""


class _IndefiniteSigma2(Exception):
    """Internal: the Cholesky route found S2 indefinite (S2 itself was overwritten)."""

    def __init__(self, tol: float):
        self.tol = tol


def _input_eps(x) -> float:
    """Round-off unit of the precision a matrix was given in (float32 inputs: float32's)."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.floating):
        return max(float(np.finfo(dtype).eps), _EPS)
    return _EPS


def _tolerance(d: int, eps: float, scale: float) -> float:
    """Round-off level of a d x d symmetric computation on entries of size ``scale``."""
    return 8.0 * max(d, 1) * eps * scale


def _indefinite(sigma: np.ndarray, name: str, tol: float) -> IndefiniteCovarianceError:
    w = np.linalg.eigvalsh(sigma)  # only on the error path
    return IndefiniteCovarianceError(
        f"{name} is not a covariance matrix: it is indefinite, most negative eigenvalue "
        f"{w[0]:.6g} (largest {w[-1]:.6g}; round-off tolerance {tol:.3g})"
    )


def _psd_factor(s: np.ndarray, name: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Pivoted Cholesky S = P L Lᵀ Pᵀ of rank r; raises if S is indefinite beyond round-off.

    Returns:
      (perm, factor): 0-based pivot order and the d x r factor, S[perm][:, perm] ≈ F Fᵀ.
    """
    c, piv, rank, info = lapack.dpstrf(s, lower=1, overwrite_a=0)
    if info < 0:
        raise np.linalg.LinAlgError(f"dpstrf failed with info={info}")
    perm = piv - 1  # LAPACK pivots are 1-based
    factor = np.tril(c[:, :rank])  # the strict upper part of c is not L
    d = s.shape[0]
    scale = max(float(np.max(np.abs(np.diag(s)))), 0.0) if d else 0.0
    # For a PSD S the residual is the Schur complement: PSD with a diagonal below dpstrf's
    # tolerance, hence every entry that small. A larger entry means a negative eigenvalue.
    residual = s[np.ix_(perm, perm)] - factor @ factor.T
    tol = _tolerance(d, eps, max(scale, float(np.max(np.abs(s), initial=0.0))))
    if d and float(np.max(np.abs(residual))) > tol:
        raise _indefinite(s, name, tol)
    return perm, factor


def _check_psd(s: np.ndarray, name: str, eps: float) -> None:
    """Raise :class:`IndefiniteCovarianceError` unless ``s`` is PSD up to round-off."""
    if s.shape[0] == 0:
        return
    _, info = lapack.dpotrf(s, lower=1, clean=0, overwrite_a=0)
    if info == 0:
        return  # positive definite
    _psd_factor(s, name, eps)


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


def _eigenvalues(m: np.ndarray) -> np.ndarray:
    """Eigenvalues of the symmetric matrix whose lower triangle is ``m`` (Fortran, consumed)."""
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
    return w


def _sum_sqrt(w: np.ndarray) -> float:
    """Σ √λ_i; eigenvalues at the round-off level (|λ| <= n · eps · λ_max) count as 0."""
    if w.size == 0:
        return 0.0
    tol = w.size * _EPS * max(float(np.max(w)), 0.0)
    return float(np.sum(np.sqrt(np.where(w > tol, w, 0.0))))


def _sum_sqrt_eigenvalues(m: np.ndarray) -> float:
    """Σ √λ_i of the symmetric PSD matrix whose lower triangle is ``m`` (Fortran order, consumed).

    Eigenvalues at the round-off level (|λ| <= n · eps · λ_max) are exact zeros of a singular
    matrix and count as 0.
    """
    if m.shape[0] == 0:
        return 0.0
    return _sum_sqrt(_eigenvalues(m))


def _cholesky_route(
    s1: np.ndarray, s2: np.ndarray, names: tuple[str, str] = ("sigma1", "sigma2"), eps=_EPS
) -> float | None:
    """S1 = L Lᵀ clearly positive definite: Σ √λ(Lᵀ S2 L) via dsygst; None otherwise.

    ``s2`` (Fortran order) is overwritten when a value is returned, left as is for None.
    Raises ``_IndefiniteSigma2`` when S2 is indefinite (then Lᵀ S2 L is too).
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
    s2_scale = float(np.max(np.abs(np.diag(s2))))
    # itype=2: lower triangle of Lᵀ S2 L, where S1 = L Lᵀ (the problem S2 S1 x = λ x).
    m, info = lapack.dsygst(s2, chol, itype=2, lower=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsygst failed with info={info}")
    w = _eigenvalues(m)
    # |Lᵀ S2 L| <= ||S1|| ||S2||; its round-off is relative to that.
    tol = _tolerance(d, eps, d * scale * s2_scale)
    if w.size and float(w[0]) < -tol:
        raise _IndefiniteSigma2(_tolerance(d, eps, s2_scale))
    return _sum_sqrt(w)


def _pivoted_route(
    s1: np.ndarray, s2: np.ndarray, names: tuple[str, str] = ("sigma1", "sigma2"), eps=_EPS
) -> float:
    """S1 = P L Lᵀ Pᵀ of rank r (pivoted Cholesky): Σ √λ of the r x r matrix Aᵀ S2 A.

    Raises :class:`IndefiniteCovarianceError` when S1 or S2 is indefinite.
    """
    perm, factor = _psd_factor(s1, names[0], eps)
    _check_psd(s2, names[1], eps)
    if factor.shape[1] == 0:
        return 0.0
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


def trace_sqrt_product(
    sigma1: np.ndarray,
    sigma2: np.ndarray,
    *,
    blas_threads: int | None = 1,
    names: tuple[str, str] = ("sigma1", "sigma2"),
):
    """tr((sigma1 @ sigma2)^½) for symmetric positive semi-definite matrices, in float64.

    A clearly positive-definite ``sigma1`` is factored by Cholesky (S1 = L Lᵀ, then the
    eigenvalues of Lᵀ S2 L); otherwise by the rank-revealing pivoted Cholesky factorization
    (its first rank(S1) columns). Both give the eigenvalues of S1 S2 through a symmetric matrix.

    Args:
      sigma1: [d, d] covariance.
      sigma2: [d, d] covariance.
      blas_threads: BLAS threads for the factorizations (None: leave the current setting).
      names: what the two matrices are, for error messages.

    Returns:
      The trace of the principal square root of ``sigma1 @ sigma2`` (a real number >= 0).

    Raises:
      IndefiniteCovarianceError: a matrix has a negative eigenvalue beyond the round-off of its
        precision (float32 inputs: float32 round-off); the message names it and gives its most
        negative eigenvalue.
    """
    eps = max(_input_eps(sigma1), _input_eps(sigma2))
    return _trace_sqrt_product(sigma1, sigma2, blas_threads, names, eps)


def _trace_sqrt_product(sigma1, sigma2, blas_threads, names, eps) -> float:
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
        try:
            fast = _cholesky_route(s1, s2, names, eps)
        except _IndefiniteSigma2 as e:
            raise _indefinite(sigma2, names[1], e.tol) from None
        if fast is not None:
            return fast
        return _pivoted_route(s1, s2, names, eps)


def frechet_distance(
    mu1,
    sigma1,
    mu2,
    sigma2,
    *,
    blas_threads: int | None = 1,
    names: tuple[str, str] | None = None,
) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID on Inception pool3).

    Args:
      mu1: [d] mean of the first set of features.
      sigma1: [d, d] covariance of the first set (e.g. ``RunningStats.cov``).
      mu2: [d] mean of the second set.
      sigma2: [d, d] covariance of the second set.
      blas_threads: BLAS threads for the factorizations (None: leave the current setting).
      names: what the two statistics are (e.g. ``("reference ref.npz", "generated images")``),
        for error messages.

    Returns:
      The squared Fréchet distance as a Python float (>= 0; round-off below zero is clamped).

    Raises:
      ValueError: shapes do not match, values are not finite, or a covariance is not symmetric.
      IndefiniteCovarianceError: (a ValueError) a covariance has a negative eigenvalue beyond
        round-off; the message names the statistics and the most negative eigenvalue.
    """
    eps = max(_input_eps(sigma1), _input_eps(sigma2))
    mu1, sigma1 = _check(mu1, sigma1, "1")
    mu2, sigma2 = _check(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 differ in dimension: {mu1.shape} vs {mu2.shape}")
    labels = (
        ("sigma1", "sigma2") if names is None else (f"sigma1 ({names[0]})", f"sigma2 ({names[1]})")
    )
    diff = mu1 - mu2
    tr_covmean = _trace_sqrt_product(sigma1, sigma2, blas_threads, labels, eps)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)
