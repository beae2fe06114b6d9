"""Inception Score, precision and recall (Kynkäänniemi et al. 2019) and the CAS helper."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special

__all__ = ["classification_accuracy_score", "inception_score", "precision_recall"]


def inception_score(
    logits_or_probs: Any, *, splits: int = 10, from_logits: bool = True
) -> tuple[float, float]:
    """The Inception Score exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

    As in the reference implementation of Salimans et al. (and the ADM evaluator), the N
    predictions are cut into ``splits`` consecutive parts ``[i*N//splits, (i+1)*N//splits)``,
    the score is computed on each with p(y) the part's mean prediction, and the mean and the
    (population) standard deviation of the part scores are returned. The published numbers use
    the softmax of the FID Inception's 1008 logits without the classifier bias (the ADM
    evaluator multiplies pool3 by the ``softmax/logits/MatMul`` weights only): see
    ``make_feature_fn(..., logits_bias=False)``.

    Args:
      logits_or_probs: [N, C] logits (``from_logits=True``) or class probabilities.
      splits: number of parts (10 in the paper's tables).
      from_logits: whether the input is logits (softmax taken here, in float64).

    Returns:
      (mean, std) of the per-part scores.

    Raises:
      ValueError: the input is not [N, C] with N >= splits, or probabilities are invalid.
    """
    x = np.asarray(logits_or_probs, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"inception_score expects [N, C] logits or probabilities, got {x.shape}")
    n = x.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score needs splits >= 1 and N >= splits, got N={n}, {splits=}")
    if not np.all(np.isfinite(x)):
        raise ValueError("inception_score input contains NaN or infinite values")
    if from_logits:
        logp = scipy.special.log_softmax(x, axis=1)
        p = np.exp(logp)
    else:
        if np.any(x < 0) or not np.allclose(x.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("probabilities must be >= 0 and sum to 1 per row")
        p = x / x.sum(axis=1, keepdims=True)
        logp = None
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        part = p[lo:hi]
        py = part.mean(axis=0)
        if logp is not None:
            with np.errstate(divide="ignore"):
                log_py = np.log(py)
            kl = np.sum(part * (logp[lo:hi] - log_py[None, :]), axis=1)
        else:
            kl = np.sum(scipy.special.rel_entr(part, py[None, :]), axis=1)
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _sq_dists(a: np.ndarray, a2: np.ndarray, b: np.ndarray, b2: np.ndarray) -> np.ndarray:
    d = a2[:, None] + b2[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)


def _knn_radii(x: np.ndarray, k: int, block: int) -> np.ndarray:
    """Squared distance from each row of x to its k-th nearest other row."""
    x2 = _sq_norms(x)
    radii = np.empty(x.shape[0], x.dtype)
    for lo in range(0, x.shape[0], block):
        d = _sq_dists(x[lo : lo + block], x2[lo : lo + block], x, x2)
        # Position 0 of the sorted row is the point itself (distance 0).
        radii[lo : lo + block] = np.partition(d, k, axis=1)[:, k]
    return radii


def _inside(query: np.ndarray, ref: np.ndarray, ref_radii: np.ndarray, block: int) -> np.ndarray:
    """For each query row: is it within the k-NN ball of some ref row?"""
    q2, r2 = _sq_norms(query), _sq_norms(ref)
    out = np.zeros(query.shape[0], bool)
    for lo in range(0, query.shape[0], block):
        for rlo in range(0, ref.shape[0], block):
            d = _sq_dists(
                query[lo : lo + block],
                q2[lo : lo + block],
                ref[rlo : rlo + block],
                r2[rlo : rlo + block],
            )
            out[lo : lo + block] |= np.any(d <= ref_radii[None, rlo : rlo + block], axis=1)
    return out


def precision_recall(
    real_feats: Any, fake_feats: Any, *, k: int = 3, block_size: int = 4096, dtype=np.float64
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of generated features.

    Each set's manifold is the union of balls around its points with radius the distance to
    the k-th nearest neighbour within the set. Precision is the fraction of fake points inside
    the real manifold; recall the fraction of real points inside the fake manifold. Distances
    are Euclidean, computed in blocks of ``block_size`` rows (memory O(block_size²)).

    Args:
      real_feats: [N_real, d] features of real images (e.g. Inception pool3).
      fake_feats: [N_fake, d] features of generated images.
      k: neighbourhood size (3 in the paper and the ADM evaluator).
      block_size: rows per distance block.
      dtype: compute dtype (float64 by default; float32 is faster on large sets).

    Returns:
      ``{"precision": float, "recall": float}``.

    Raises:
      ValueError: shapes differ, or a set has no more than k points.
    """
    real = np.asarray(real_feats, dtype=dtype)
    fake = np.asarray(fake_feats, dtype=dtype)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real_feats and fake_feats must be [N, d] with the same d, got {real.shape} and "
            f"{fake.shape}"
        )
    if k < 1 or real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(
            f"precision_recall needs k >= 1 and more than k points per set, got {k=}, "
            f"{real.shape[0]} real and {fake.shape[0]} fake"
        )
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    real_radii = _knn_radii(real, k, block_size)
    fake_radii = _knn_radii(fake, k, block_size)
    precision = float(np.mean(_inside(fake, real, real_radii, block_size)))
    recall = float(np.mean(_inside(real, fake, fake_radii, block_size)))
    return {"precision": precision, "recall": recall}


def classification_accuracy_score(logits_or_predictions: Any, labels: Any) -> dict[str, Any]:
    """Top-1 / top-5 accuracy of a classifier (CAS: trained on synthetic, evaluated on real).

    Args:
      logits_or_predictions: [N, C] float scores (logits or probabilities), or integer
        predictions: [N] (top-1 only) or [N, K] class indices ranked best first.
      labels: [N] integer true labels.

    Returns:
      ``{"top1": float, "top5": float | None, "count": int}``; ``top5`` is None when fewer
      than 5 ranked predictions are available (C < 5 or K < 5).

    Raises:
      ValueError: shapes do not match or labels are out of range.
    """
    labels = np.asarray(labels)
    x = np.asarray(logits_or_predictions)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if x.shape[0] != labels.shape[0] or x.ndim not in (1, 2):
        raise ValueError(
            f"expected [N, C] scores or [N]/[N, K] predictions for N={labels.shape[0]} labels, "
            f"got shape {x.shape}"
        )
    n = labels.shape[0]
    if n == 0:
        raise ValueError("classification_accuracy_score needs at least one example")
    if np.issubdtype(x.dtype, np.integer):
        ranked = x[:, None] if x.ndim == 1 else x
    elif np.issubdtype(x.dtype, np.floating):
        if x.ndim != 2:
            raise ValueError(f"float scores must be [N, C], got shape {x.shape}")
        if np.any(labels < 0) or np.any(labels >= x.shape[1]):
            raise ValueError(
                f"labels must be in [0, {x.shape[1]}), got {labels.min()}..{labels.max()}"
            )
        kk = min(5, x.shape[1])
        # Best first; ties go to the lower class index, as a stable sort of -scores gives.
        ranked = np.argsort(-x, axis=1, kind="stable")[:, :kk]
    else:
        raise ValueError(f"scores must be float or integer, got {x.dtype}")
    hits = ranked == labels[:, None]
    top1 = float(np.mean(hits[:, 0]))
    top5 = float(np.mean(np.any(hits[:, :5], axis=1))) if ranked.shape[1] >= 5 else None
    return {"top1": top1, "top5": top5, "count": int(n)}
