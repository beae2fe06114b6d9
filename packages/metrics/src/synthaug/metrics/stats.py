"""Streaming mean and covariance of feature vectors, in float64, mergeable across hosts."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg.blas as blas

__all__ = ["RunningStats"]


class RunningStats:
    """Mean and covariance over any number of feature batches without keeping the features.

    Holds the count, the mean and the matrix of centred sums of outer products ``M2`` (float64,
    O(d²) memory whatever the count). A batch is folded in with Chan et al.'s parallel update,
    ``M2 = M2_a + M2_b + δδᵀ n_a n_b / n`` with ``δ = mean_b - mean_a``, which is also how two
    accumulators (e.g. from two hosts) are merged. ``cov`` is the unbiased covariance
    (``ddof=1``), as ``numpy.cov(features, rowvar=False)`` that pytorch-fid uses.

    Example::

        stats = RunningStats()
        for batch in batches:
            stats.update(feature_fn(batch)[0])
        mu, sigma = stats.mean, stats.cov
    """

    def __init__(self, dim: int | None = None):
        """Args:
        dim: the feature dimension; taken from the first batch when None.
        """
        self._count = 0
        self._dim = dim
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # only the upper triangle is maintained

    # -- accumulation -----------------------------------------------------------------------
    def _init(self, d: int) -> None:
        if self._dim is not None and self._dim != d:
            raise ValueError(f"features have dimension {d}, expected {self._dim}")
        self._dim = d
        if self._mean is None:
            self._mean = np.zeros(d, np.float64)
            self._m2 = np.zeros((d, d), np.float64, order="F")

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_add) -> None:
        n_a = self._count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._m2 = m2_add(self._m2)
        if n_a > 0:
            # Rank-one correction, in place on the upper triangle.
            self._m2 = blas.dsyr(float(n_a) * n_b / n, delta, a=self._m2, overwrite_a=1)
        self._mean += delta * (n_b / n)
        self._count = n

    def update(self, features: Any) -> RunningStats:
        """Folds a batch of feature vectors in.

        Args:
          features: [n, d] array (any float dtype; accumulated in float64). n may be 0.

        Returns:
          self, so that calls chain.

        Raises:
          ValueError: the batch is not 2-D, has the wrong dimension, or is not finite.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [n, d], got shape {x.shape}")
        n_b, d = x.shape
        self._init(d)
        if n_b == 0:
            return self
        if not np.all(np.isfinite(x)):
            raise ValueError("features contain NaN or infinite values")
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        # xc.T is a Fortran-ordered [d, n] view, so dsyrk reads it without copying.
        self._combine(
            n_b,
            mean_b,
            lambda m2: blas.dsyrk(1.0, xc.T, beta=1.0, c=m2, trans=0, overwrite_c=1),
        )
        return self

    def merge(self, other: RunningStats) -> RunningStats:
        """Folds another accumulator (e.g. another host's) into this one.

        Args:
          other: a RunningStats over other features of the same dimension.

        Returns:
          self.
        """
        if not isinstance(other, RunningStats):
            raise TypeError(f"can only merge a RunningStats, got {type(other).__name__}")
        if other._count == 0:
            if other._dim is not None:
                self._init(other._dim)
            return self
        self._init(other._dim)
        m2_b = other._m2
        self._combine(other._count, other._mean, lambda m2: np.add(m2, m2_b, out=m2))
        return self

    # -- state for all-gathers ---------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The accumulator as arrays ``{count, mean, m2}`` (for all-gathers and checkpoints)."""
        if self._dim is None:
            raise ValueError("RunningStats has seen no features yet; its dimension is unknown")
        self._init(self._dim)
        return {
            "count": np.asarray(self._count, np.int64),
            "mean": self._mean.copy(),
            "m2": self._full_m2(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RunningStats:
        """Rebuilds an accumulator from :meth:`state_dict` output."""
        for k in ("count", "mean", "m2"):
            if k not in state:
                raise KeyError(f"RunningStats state lacks {k!r}")
        mean = np.asarray(state["mean"], np.float64)
        m2 = np.asarray(state["m2"], np.float64)
        d = mean.shape[0]
        if mean.ndim != 1 or m2.shape != (d, d):
            raise ValueError(f"RunningStats state: mean {mean.shape} and m2 {m2.shape} mismatch")
        out = cls(d)
        out._init(d)
        out._count = int(state["count"])
        out._mean[:] = mean
        out._m2[:] = m2
        return out

    # -- results -----------------------------------------------------------------------------
    def _full_m2(self) -> np.ndarray:
        up = np.triu(self._m2)
        return up + np.triu(up, 1).T

    @property
    def count(self) -> int:
        """The number of feature vectors seen."""
        return self._count

    @property
    def dim(self) -> int | None:
        """The feature dimension (None before the first batch)."""
        return self._dim

    @property
    def mean(self) -> np.ndarray:
        """[d] float64 mean of the features seen."""
        if self._count == 0:
            raise ValueError("RunningStats.mean needs at least one feature vector")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """[d, d] float64 unbiased covariance (ddof=1) of the features seen."""
        if self._count < 2:
            raise ValueError(
                f"RunningStats.cov needs at least 2 feature vectors, has {self._count}"
            )
        return self._full_m2() / (self._count - 1)

    def __repr__(self) -> str:
        return f"RunningStats(dim={self._dim}, count={self._count})"
