"""Streaming training (fit_stream): learning, evaluation, exact resume, bad input."""

import jax
import numpy as np
import pytest

from synthaug.classifiers import epoch_permutation, fit, fit_stream

from ._tiny import micro_config, toy_data


def _epochs(images, labels, bs, seed=3):
    def epoch_batches(epoch):
        perm = epoch_permutation(seed, epoch, len(labels))
        for s in range(0, len(labels), bs):
            idx = perm[s : s + bs]
            yield {"images": images[idx], "labels": labels[idx]}

    return epoch_batches


def test_fit_stream_learns_evaluates_and_resumes_exactly(tmp_path):
    cfg = micro_config(epochs=3, checkpoint_every_steps=4)
    images, labels = toy_data(68)  # 8 full batches + a partial one per epoch (skipped)
    ev_x, ev_y = toy_data(21, seed=1)
    batches = _epochs(images, labels, 8)

    def eval_batches():
        yield {"images": ev_x[:13], "labels": ev_y[:13]}
        yield {"images": ev_x[13:], "labels": ev_y[13:]}

    kw = dict(steps_per_epoch=8, rng=jax.random.key(0), eval_batches=eval_batches)
    ref, hist = fit_stream(cfg, batches, checkpoint_dir=tmp_path / "ref", **kw)
    assert int(ref.step) == 24 and [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["eval_count"] == 21  # every eval example once, partial batches padded
    assert hist[-1]["eval_top1"] > 0.5 and hist[-1]["train_loss"] < hist[0]["train_loss"]

    class Stop(Exception):
        pass

    def stop_at_11(step, metrics):
        if step == 11:
            raise Stop

    with pytest.raises(Stop):
        fit_stream(cfg, batches, checkpoint_dir=tmp_path / "b", step_fn=stop_at_11, **kw)
    res, hist2 = fit_stream(cfg, batches, checkpoint_dir=tmp_path / "b", **kw)
    assert int(res.step) == 24
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(res), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert hist2[-1]["eval_top1"] == hist[-1]["eval_top1"]


def test_fit_stream_rejects_short_epochs_and_bad_labels():
    cfg = micro_config(epochs=1)
    images, labels = toy_data(20)
    with pytest.raises(ValueError, match=r"epoch_batches\(0\) ended after 2 full batches"):
        fit_stream(cfg, _epochs(images, labels, 8), steps_per_epoch=3, rng=jax.random.key(0))
    bad = labels.copy()
    bad[0] = 7
    with pytest.raises(ValueError, match="labels must be in"):
        fit_stream(cfg, _epochs(images, bad, 8, seed=0), steps_per_epoch=2, rng=jax.random.key(0))


def test_repeated_fits_share_one_compiled_step():
    from synthaug.classifiers import steps

    cfg = micro_config(epochs=1)
    images, labels = toy_data(32)
    fit(cfg, images, labels, rng=jax.random.key(0))
    n = steps._train_step_donated._cache_size()
    # Same recipe and data size, other data and seed: JAX's jit cache serves the step.
    fit(cfg, images[::-1].copy(), labels[::-1].copy(), rng=jax.random.key(1))
    assert steps._train_step_donated._cache_size() == n
    fit(micro_config(epochs=1, base_lr=0.05), images, labels, rng=jax.random.key(1))
    assert steps._train_step_donated._cache_size() == n + 1  # another schedule
