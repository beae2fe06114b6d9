import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special

from synthaug.metrics import classification_accuracy_score, inception_score, precision_recall


def _is_reference(probs, splits):
    """The improved-GAN formula, written out directly."""
    n = len(probs)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part) - np.log(py)), axis=1).mean()
        scores.append(np.exp(kl))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_formula():
    rs = np.random.RandomState(0)
    logits = rs.standard_normal((103, 20)) * 3
    probs = scipy.special.softmax(logits, axis=1)
    want = _is_reference(probs, 10)
    assert inception_score(logits, splits=10) == pytest.approx(want, rel=1e-10)
    assert inception_score(probs, splits=10, from_logits=False) == pytest.approx(want, rel=1e-10)


def test_inception_score_limits():
    c = 10
    # Confident and uniform over classes: IS = number of classes, in every split.
    onehot = np.eye(c)[np.arange(100) % c]
    mean, std = inception_score(onehot, splits=10, from_logits=False)
    assert mean == pytest.approx(c) and std == pytest.approx(0.0, abs=1e-12)
    # Every image gets the same prediction: IS = 1.
    assert inception_score(np.tile(np.arange(c, dtype=float), (50, 1)), splits=5)[
        0
    ] == pytest.approx(1.0)


def test_inception_score_errors():
    with pytest.raises(ValueError, match="N >= splits"):
        inception_score(np.zeros((5, 3)), splits=10)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        inception_score(np.zeros(5))
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.full((10, 3), 0.5), splits=2, from_logits=False)


def _pr_reference(real, fake, k):
    dr = scipy.spatial.distance.cdist(real, real)
    df = scipy.spatial.distance.cdist(fake, fake)
    rr = np.sort(dr, axis=1)[:, k]
    rf = np.sort(df, axis=1)[:, k]
    d = scipy.spatial.distance.cdist(fake, real)
    precision = np.mean(np.any(d <= rr[None, :], axis=1))
    recall = np.mean(np.any(d.T <= rf[None, :], axis=1))
    return precision, recall


@pytest.mark.parametrize("block", [7, 4096])
def test_precision_recall_matches_brute_force(block):
    rs = np.random.RandomState(1)
    real = rs.standard_normal((150, 8))
    fake = 0.6 * rs.standard_normal((120, 8)) + 0.8  # narrower, shifted
    got = precision_recall(real, fake, k=3, block_size=block)
    p, r = _pr_reference(real, fake, 3)
    assert got["precision"] == pytest.approx(p) and got["recall"] == pytest.approx(r)
    assert 0.0 < got["recall"] < got["precision"] < 1.0


def test_precision_recall_extremes():
    rs = np.random.RandomState(2)
    x = rs.standard_normal((50, 4))
    assert precision_recall(x, x.copy()) == {"precision": 1.0, "recall": 1.0}
    far = precision_recall(x, x + 1e3)
    assert far == {"precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(x[:3], x, k=3)
    with pytest.raises(ValueError, match="same d"):
        precision_recall(x, x[:, :2])


def test_cas_top1_top5():
    rs = np.random.RandomState(3)
    logits = rs.standard_normal((200, 10))
    labels = rs.randint(0, 10, 200)
    order = np.argsort(-logits, axis=1)
    got = classification_accuracy_score(logits, labels)
    assert got["top1"] == pytest.approx(np.mean(order[:, 0] == labels))
    assert got["top5"] == pytest.approx(np.mean(np.any(order[:, :5] == labels[:, None], axis=1)))
    assert got["count"] == 200
    # Integer predictions: [N] gives top-1 only; [N, K>=5] ranked gives top-5 too.
    only = classification_accuracy_score(order[:, 0], labels)
    assert only["top1"] == got["top1"] and only["top5"] is None
    assert classification_accuracy_score(order[:, :5], labels) == got


def test_cas_errors():
    with pytest.raises(ValueError, match="labels must be"):
        classification_accuracy_score(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="N=2"):
        classification_accuracy_score(np.zeros((3, 4)), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        classification_accuracy_score(np.zeros((3, 4)), np.array([0, 1, 4]))
