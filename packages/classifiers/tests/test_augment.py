"""Augmentations: Mixup/CutMix label algebra, RandAugment, random erasing, crops."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthaug.classifiers import (
    RANDAUGMENT_OPS,
    mixup_cutmix,
    rand_augment,
    random_erasing,
    random_flip,
    random_pad_crop,
)

KEY = jax.random.PRNGKey(0)


def _images(n=6, size=8):
    return jax.random.uniform(KEY, (n, size, size, 3), minval=0, maxval=255)


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_mixup_cutmix_targets_match_the_pixels(mixup, cutmix):
    n = 6
    x = jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32)[:, None, None, None], (n, 8, 8, 3))
    t = jax.nn.one_hot(jnp.arange(n), n)
    found_mixed = False
    mix = jax.jit(functools.partial(mixup_cutmix, mixup_alpha=mixup, cutmix_alpha=cutmix))
    for seed in range(4):
        xm, tm = mix(jax.random.PRNGKey(seed), x, t)
        np.testing.assert_allclose(tm.sum(-1), 1.0, rtol=1e-6)
        lam = float(tm[0, 0])
        # Example 0 is mixed with example n-1 (the batch reversed): the mean pixel value
        # is the label-weighted mean of the two sources, for Mixup and CutMix alike.
        np.testing.assert_allclose(
            float(xm[0].mean()), lam * 0 + (1 - lam) * (n - 1), rtol=1e-5, atol=1e-5
        )
        found_mixed |= 0.0 < lam < 1.0
    assert found_mixed


def test_rand_augment_changes_images_and_stays_in_range():
    x = _images()
    y = jax.jit(functools.partial(rand_augment, num_layers=1, magnitude=9.0))(KEY, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 255.0
    assert not np.allclose(y, x)
    np.testing.assert_array_equal(rand_augment(KEY, x, num_layers=0), x)
    assert len(RANDAUGMENT_OPS) == 14
    with pytest.raises(ValueError, match="magnitude"):
        rand_augment(KEY, x, magnitude=11.0)


def test_random_erasing_fills_a_rectangle():
    x = jnp.zeros((8, 16, 16, 3))
    y = np.asarray(jax.jit(functools.partial(random_erasing, prob=1.0))(KEY, x))
    for img in y:
        rows, cols = np.nonzero(np.any(img != 0, axis=-1))
        assert rows.size > 0
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert area == rows.size  # the changed pixels form one full rectangle
    np.testing.assert_array_equal(jax.jit(functools.partial(random_erasing, prob=0.0))(KEY, x), x)


def test_crop_and_flip_preserve_content():
    x = _images(4, 8)
    flipped = jax.jit(random_flip)(KEY, x)
    for a, b in zip(np.asarray(x), np.asarray(flipped), strict=True):
        assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
    crop = jax.jit(random_pad_crop, static_argnames="pad")
    np.testing.assert_array_equal(crop(KEY, x, pad=0), x)
    assert crop(KEY, x, pad=2).shape == x.shape


def test_mixup_roll_is_big_vision_mixup():
    from synthaug.classifiers import mixup_roll

    key = jax.random.key(4)
    images = jnp.arange(4 * 2 * 2 * 3, dtype=jnp.float32).reshape(4, 2, 2, 3)
    targets = jax.nn.one_hot(jnp.arange(4), 4)
    x, t = mixup_roll(key, images, targets, alpha=0.2)
    a = jax.random.beta(key, 0.2, 0.2)
    a = max(float(a), 1.0 - float(a))  # big_vision keeps the larger weight on the example
    assert a >= 0.5
    np.testing.assert_allclose(x, a * images + (1 - a) * jnp.roll(images, 1, axis=0), rtol=1e-6)
    np.testing.assert_allclose(t[1], [1 - a, a, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
