"""On-device batch augmentation: crops and flips, RandAugment, Mixup/CutMix, random erasing.

Every function is a pure function of an explicit key and a batch, usable under ``jax.jit``
with the batch sharded over devices. Per-example randomness comes from ``fold_in(key, i)``
so the result does not depend on how the batch is split over devices. Images are float
arrays in [0, 255] (``[B, H, W, C]``) unless said otherwise.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _per_example_keys(key: jax.Array, n: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flip each image left-right with probability 1/2.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]``.

    Returns:
      images of the same shape.
    """
    chex.assert_rank(images, 4)
    keys = _per_example_keys(key, images.shape[0])
    flip = jax.vmap(lambda k: jax.random.bernoulli(k))(keys)
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def random_pad_crop(key: jax.Array, images: jax.Array, *, pad: int = 4) -> jax.Array:
    """Pad by ``pad`` pixels (reflect) and crop back to the input size at a random offset.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]``.
      pad: border width.

    Returns:
      images of the same shape.
    """
    chex.assert_rank(images, 4)
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    keys = _per_example_keys(key, b)

    def crop(k, img):
        ky, kx = jax.random.split(k)
        oy = jax.random.randint(ky, (), 0, 2 * pad + 1)
        ox = jax.random.randint(kx, (), 0, 2 * pad + 1)
        return jax.lax.dynamic_slice(img, (oy, ox, 0), (h, w, c))

    return jax.vmap(crop)(keys, padded)


# --------------------------------------------------------------------------- RandAugment
def _blend(a, b, factor):
    """PIL ImageEnhance: ``b + factor * (a - b)`` clipped to [0, 255]."""
    return jnp.clip(b + factor * (a - b), 0.0, 255.0)


def _gray(img):
    g = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    return g[..., None]


def _affine(img, matrix, fill):
    """Nearest-neighbour inverse affine warp of one HWC image; ``matrix`` maps output
    (x, y, 1) to input (x, y) about the image centre."""
    h, w, _ = img.shape
    ys, xs = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    xo, yo = xs - cx, ys - cy
    xi = matrix[0, 0] * xo + matrix[0, 1] * yo + matrix[0, 2] + cx
    yi = matrix[1, 0] * xo + matrix[1, 1] * yo + matrix[1, 2] + cy
    xr, yr = jnp.round(xi).astype(jnp.int32), jnp.round(yi).astype(jnp.int32)
    valid = (xr >= 0) & (xr < w) & (yr >= 0) & (yr < h)
    out = img[jnp.clip(yr, 0, h - 1), jnp.clip(xr, 0, w - 1)]
    return jnp.where(valid[..., None], out, fill)


def _equalize(img):
    def channel(c):
        ci = c.astype(jnp.int32)
        hist = jnp.zeros(256, jnp.float32).at[ci.ravel()].add(1.0)
        cdf = jnp.cumsum(hist)
        cdf_min = jnp.min(jnp.where(hist > 0, cdf, jnp.inf))
        denom = jnp.maximum(cdf[-1] - cdf_min, 1.0)
        lut = jnp.clip(jnp.round((cdf - cdf_min) / denom * 255.0), 0, 255)
        return jnp.where(cdf[-1] - cdf_min > 0, lut[ci], c)

    return jnp.stack([channel(img[..., i]) for i in range(img.shape[-1])], axis=-1)


def _autocontrast(img):
    lo = jnp.min(img, axis=(0, 1), keepdims=True)
    hi = jnp.max(img, axis=(0, 1), keepdims=True)
    scale = jnp.where(hi > lo, 255.0 / jnp.maximum(hi - lo, 1e-6), 1.0)
    return jnp.where(hi > lo, (img - lo) * scale, img)


def _sharpness(img, factor):
    kernel = jnp.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], jnp.float32) / 13.0
    padded = jnp.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w, _ = img.shape
    smooth = sum(
        kernel[dy, dx] * padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)
    )
    # PIL keeps the border pixels unchanged.
    border = jnp.zeros((h, w, 1), bool).at[0].set(True).at[-1].set(True)
    border = border.at[:, 0].set(True).at[:, -1].set(True)
    smooth = jnp.where(border, img, smooth)
    return _blend(img, smooth, factor)


RANDAUGMENT_OPS = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Solarize",
    "Color",
    "Posterize",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)


def _apply_op(op_index, img, mag, sign, fill):
    """Apply RANDAUGMENT_OPS[op_index] at magnitude ``mag`` in [0, 1] (timm scaling)."""
    h, w, _ = img.shape

    def rotate(img):
        ang = jnp.deg2rad(30.0 * mag * sign)
        c, s = jnp.cos(ang), jnp.sin(ang)
        return _affine(img, jnp.array([[c, -s, 0.0], [s, c, 0.0]]), fill)

    def shear_x(img):
        return _affine(img, jnp.array([[1.0, 0.3 * mag * sign, 0.0], [0.0, 1.0, 0.0]]), fill)

    def shear_y(img):
        return _affine(img, jnp.array([[1.0, 0.0, 0.0], [0.3 * mag * sign, 1.0, 0.0]]), fill)

    def translate_x(img):
        return _affine(img, jnp.array([[1.0, 0.0, 0.45 * mag * sign * w], [0.0, 1.0, 0.0]]), fill)

    def translate_y(img):
        return _affine(img, jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.45 * mag * sign * h]]), fill)

    def posterize(img):
        bits = jnp.round(4.0 - 4.0 * mag).astype(jnp.int32)  # timm "increasing": 4 -> 0 bits
        shift = 8 - jnp.clip(bits, 1, 8)
        q = (img.astype(jnp.int32) >> shift) << shift
        return q.astype(img.dtype)

    branches = [
        lambda img: img,
        _autocontrast,
        _equalize,
        rotate,
        lambda img: jnp.where(img >= 256.0 - 256.0 * mag, 255.0 - img, img),  # Solarize
        lambda img: _blend(img, _gray(img), 1.0 + 0.9 * mag * sign),  # Color
        posterize,
        lambda img: _blend(img, jnp.mean(_gray(img)), 1.0 + 0.9 * mag * sign),  # Contrast
        lambda img: _blend(img, jnp.zeros_like(img), 1.0 + 0.9 * mag * sign),  # Brightness
        lambda img: _sharpness(img, 1.0 + 0.9 * mag * sign),
        shear_x,
        shear_y,
        translate_x,
        translate_y,
    ]
    return jax.lax.switch(op_index, branches, img)


def rand_augment(
    key: jax.Array,
    images: jax.Array,
    *,
    num_layers: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.5,
    fill: float = 128.0,
) -> jax.Array:
    """RandAugment (Cubuk et al. 2020) with timm's ``rand-m9-mstd0.5`` conventions.

    Each image gets ``num_layers`` operations drawn uniformly from ``RANDAUGMENT_OPS``;
    the magnitude (out of 10) is drawn per op from N(magnitude, magnitude_std) and clipped,
    signed ops are negated with probability 1/2.

    Args:
      key: PRNG key.
      images: float ``[B, H, W, C]`` in [0, 255].
      num_layers: operations per image.
      magnitude: mean magnitude in [0, 10].
      magnitude_std: magnitude noise (0 = fixed).
      fill: value of pixels uncovered by geometric ops.

    Returns:
      augmented images, same shape and dtype.
    """
    chex.assert_rank(images, 4)
    if num_layers < 0 or not 0.0 <= magnitude <= 10.0:
        raise ValueError(
            f"rand_augment needs num_layers >= 0 and magnitude in [0, 10], "
            f"got {num_layers}, {magnitude}"
        )
    keys = _per_example_keys(key, images.shape[0])

    def one(k, img):
        for layer in range(num_layers):
            ko, km, ks = jax.random.split(jax.random.fold_in(k, layer), 3)
            op = jax.random.randint(ko, (), 0, len(RANDAUGMENT_OPS))
            mag = magnitude + magnitude_std * jax.random.normal(km)
            mag = jnp.clip(mag, 0.0, 10.0) / 10.0
            sign = jnp.where(jax.random.bernoulli(ks), -1.0, 1.0)
            img = _apply_op(op, img, mag, sign, fill)
        return img

    return jax.vmap(one)(keys, images.astype(jnp.float32)).astype(images.dtype)


# --------------------------------------------------------------------------- Mixup / CutMix
def mixup_cutmix(
    key: jax.Array,
    images: jax.Array,
    targets: jax.Array,
    *,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
    """Batch-mode Mixup/CutMix (timm ``Mixup`` with ``mode="batch"``).

    The batch is mixed with its reverse. With probability ``prob`` one of Mixup (Beta(α, α)
    blend) or CutMix (a box pasted, λ corrected to its area) is applied, CutMix chosen with
    probability ``switch_prob`` when both alphas are positive.

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]``.
      targets: soft targets ``[B, K]``.
      mixup_alpha, cutmix_alpha: Beta parameters (0 disables that method).
      prob: probability of mixing the batch at all.
      switch_prob: probability of CutMix when both are enabled.

    Returns:
      ``(images, targets)`` mixed.
    """
    chex.assert_rank(images, 4)
    chex.assert_rank(targets, 2)
    chex.assert_equal_shape_prefix([images, targets], 1)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets
    k_apply, k_switch, k_mix, k_cut, k_box = jax.random.split(key, 5)
    b, h, w, _ = images.shape
    apply = jax.random.bernoulli(k_apply, prob)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = jax.random.bernoulli(k_switch, switch_prob)
    else:
        use_cutmix = jnp.asarray(cutmix_alpha > 0)
    lam_mix = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else 1.0
    lam_cut = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else 1.0
    # CutMix box with area (1 - lam) and centre uniform; clipped at the borders.
    ratio = jnp.sqrt(1.0 - lam_cut)
    ch, cw = (h * ratio).astype(jnp.int32), (w * ratio).astype(jnp.int32)
    ky, kx = jax.random.split(k_box)
    cy = jax.random.randint(ky, (), 0, h)
    cx = jax.random.randint(kx, (), 0, w)
    y0, y1 = jnp.clip(cy - ch // 2, 0, h), jnp.clip(cy + ch // 2, 0, h)
    x0, x1 = jnp.clip(cx - cw // 2, 0, w), jnp.clip(cx + cw // 2, 0, w)
    ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    lam_cut = 1.0 - ((y1 - y0) * (x1 - x0)) / (h * w)
    flipped = images[::-1]
    cut_images = jnp.where(box[None, :, :, None], flipped, images)
    mix_images = lam_mix * images + (1.0 - lam_mix) * flipped
    lam = jnp.where(use_cutmix, lam_cut, lam_mix)
    lam = jnp.where(apply, lam, 1.0)
    out_images = jnp.where(use_cutmix, cut_images, mix_images.astype(images.dtype))
    out_images = jnp.where(apply, out_images, images)
    out_targets = lam * targets + (1.0 - lam) * targets[::-1]
    return out_images, out_targets


def mixup_roll(
    key: jax.Array, images: jax.Array, targets: jax.Array, *, alpha: float = 0.2
) -> tuple[jax.Array, jax.Array]:
    """big_vision's Mixup (``utils.get_mixup``): one ``a ~ Beta(alpha, alpha)`` per batch,
    ``a = max(a, 1 - a)``, each example blended with its neighbour (``roll`` by one).

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]``.
      targets: soft targets ``[B, K]``.
      alpha: the Beta parameter (big_vision's ``mixup.p``; 0.2 for ViT-S/16 on ImageNet).

    Returns:
      ``(images, targets)`` mixed.
    """
    chex.assert_rank(images, 4)
    chex.assert_rank(targets, 2)
    chex.assert_equal_shape_prefix([images, targets], 1)
    a = jax.random.beta(key, alpha, alpha)
    a = jnp.maximum(a, 1.0 - a)

    def mix(t):
        return (a * t + (1.0 - a) * jnp.roll(t, 1, axis=0)).astype(t.dtype)

    return mix(images), mix(targets)


def random_erasing(
    key: jax.Array,
    images: jax.Array,
    *,
    prob: float = 0.25,
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
) -> jax.Array:
    """Random erasing (Zhong et al. 2020; timm ``mode="pixel"``) on normalised images.

    With probability ``prob`` a rectangle of relative area in [min_area, max_area] and log-
    uniform aspect ratio is filled with standard normal noise.

    Args:
      key: PRNG key.
      images: normalised float ``[B, H, W, C]``.
      prob: per-image probability.
      min_area, max_area: relative area range.
      min_aspect: aspect ratio range is [min_aspect, 1/min_aspect].

    Returns:
      images of the same shape.
    """
    chex.assert_rank(images, 4)
    b, h, w, c = images.shape
    keys = _per_example_keys(key, b)

    def one(k, img):
        kp, ka, kr, ky, kx, kn = jax.random.split(k, 6)
        area = jax.random.uniform(ka, (), minval=min_area, maxval=max_area) * h * w
        log_r = jax.random.uniform(
            kr, (), minval=jnp.log(min_aspect), maxval=jnp.log(1.0 / min_aspect)
        )
        r = jnp.exp(log_r)
        eh = jnp.clip(jnp.round(jnp.sqrt(area * r)), 1, h).astype(jnp.int32)
        ew = jnp.clip(jnp.round(jnp.sqrt(area / r)), 1, w).astype(jnp.int32)
        y0 = jax.random.randint(ky, (), 0, h - eh + 1)
        x0 = jax.random.randint(kx, (), 0, w - ew + 1)
        ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
        box = (ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew)
        box = box & jax.random.bernoulli(kp, prob)
        noise = jax.random.normal(kn, img.shape, img.dtype)
        return jnp.where(box[..., None], noise, img)

    return jax.vmap(one)(keys, images)
