import io

import numpy as np
import pytest
import tensorflow as tf
from imagenet_data_fakes import jpeg_bytes, png_bytes
from PIL import Image

from synthaug import imagenet_data as d


def smooth_image(h, w, seed=0):
    """A smooth random colour field (resampling differences stay small on it)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(h // 16 + 2, w // 16 + 2, 3)).astype(np.uint8)
    big = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(big)


def coord_image(h, w):
    """R = column, G = row (scaled to 0..255), B = 0."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([x, y, np.zeros_like(x)], -1).round().astype(np.uint8)


def in_dataset(fn, x):
    ds = tf.data.Dataset.from_tensors(x).map(fn)
    return next(iter(ds.as_numpy_iterator()))


def resized_hw(h, w, size=256):
    """torchvision's Resize(size): shorter side to size, longer side truncated."""
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


def pil_eval(img, resize=256, crop=224):
    H, W = resized_hw(*img.shape[:2], resize)
    im = Image.fromarray(img).resize((W, H), Image.Resampling.BILINEAR)
    top, left = round((H - crop) / 2), round((W - crop) / 2)
    return np.asarray(im.crop((left, top, left + crop, top + crop)))


def tf_resize_then_crop(img, H, W, crop=224, antialias=False):
    r = tf.image.resize(img, [H, W], antialias=antialias).numpy()
    top, left = round((H - crop) / 2), round((W - crop) / 2)
    return r[top : top + crop, left : left + crop].round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("hw", [(300, 400), (375, 500), (512, 256), (100, 90), (600, 255)])
def test_eval_resize_crop_is_resize_then_crop(hw, antialias):
    img = smooth_image(*hw)
    out = d.eval_resize_crop(img, antialias=antialias).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # the literal two-step computation, full image resized then cropped
    ref = tf_resize_then_crop(img, *resized_hw(*hw), antialias=antialias)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    # and PIL's bilinear resize + crop (another filter: close, not equal)
    diff = np.abs(out.astype(int) - pil_eval(img).astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6
    square = d.eval_resize_crop(img, square=True, antialias=antialias).numpy()
    ref_square = tf_resize_then_crop(img, 256, 256, antialias=antialias)
    assert np.abs(square.astype(int) - ref_square.astype(int)).max() <= 1
    # no crop margin at all (crop = resize): the edges clamp like tf.image.resize
    full = d.eval_resize_crop(img, resize_size=224, crop_size=224, antialias=antialias).numpy()
    ref_full = tf_resize_then_crop(img, *resized_hw(*hw, 224), antialias=antialias)
    assert np.abs(full.astype(int) - ref_full.astype(int)).max() <= 1


def test_eval_resize_crop_eager_dataset_and_bytes_agree():
    img = smooth_image(300, 420, seed=1)
    enc = jpeg_bytes(img, quality=98)
    decoded = tf.io.decode_jpeg(enc).numpy()
    eager_img = d.eval_resize_crop(decoded).numpy()
    eager_bytes = d.eval_resize_crop(enc).numpy()
    ds_img = in_dataset(d.eval_resize_crop, decoded)
    ds_bytes = in_dataset(d.eval_resize_crop, tf.constant(enc))
    np.testing.assert_array_equal(eager_img, ds_img)
    np.testing.assert_array_equal(eager_bytes, ds_bytes)
    # only the needed window of the JPEG is decoded, with the same result
    np.testing.assert_array_equal(eager_img, eager_bytes)
    np.testing.assert_array_equal(
        d.eval_resize_crop(decoded, antialias=True).numpy(),
        d.eval_resize_crop(enc, antialias=True).numpy(),
    )
    # PNG bytes take the generic decode path and give the exact tensor result
    np.testing.assert_array_equal(d.eval_resize_crop(png_bytes(decoded)).numpy(), eager_img)


def test_eval_square_mode_keeps_the_central_window():
    img = coord_image(200, 400)
    out = d.eval_resize_crop(img, square=True, resize_size=256, crop_size=224).numpy()
    short = d.eval_resize_crop(img, resize_size=256, crop_size=224).numpy()
    # square: central 224/256 of both axes; shorter side: a square window in the middle
    frac = 224 / 256
    assert out[:, 0, 0].mean() == pytest.approx(255 * (1 - frac) / 2, abs=4)
    assert out[:, -1, 0].mean() == pytest.approx(255 * (1 + frac) / 2, abs=4)
    assert out[0, :, 1].mean() == pytest.approx(255 * (1 - frac) / 2, abs=4)
    half_w = 200 * frac / 2 / 400
    assert short[:, 0, 0].mean() == pytest.approx(255 * (0.5 - half_w), abs=4)
    assert short[:, -1, 0].mean() == pytest.approx(255 * (0.5 + half_w), abs=4)


def test_diffusion_downsample_is_center_crop_and_area_mean():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(128, 192, 3), dtype=np.uint8)
    out = d.diffusion_downsample(img, size=64).numpy()
    crop = img[:, 32:160].astype(np.float64)
    ref = crop.reshape(64, 2, 64, 2, 3).mean((1, 3))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out - ref).max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(
        in_dataset(lambda x: d.diffusion_downsample(x, size=64), img), out
    )
    big = rng.integers(0, 256, size=(600, 512, 3), dtype=np.uint8)
    out256 = d.diffusion_downsample(big, size=256).numpy()
    ref256 = big[44:556].astype(np.float64).reshape(256, 2, 256, 2, 3).mean((1, 3))
    assert out256.shape == (256, 256, 3) and np.abs(out256 - ref256).max() <= 0.5 + 1e-6
    # from JPEG bytes: the window decode differs from a full decode only by chroma
    # upsampling at the window's edge
    enc = jpeg_bytes(img)
    a = d.diffusion_downsample(enc, size=64).numpy().astype(int)
    b = d.diffusion_downsample(tf.io.decode_jpeg(enc), size=64).numpy().astype(int)
    assert np.abs(a - b)[1:-1, 1:-1].max() <= 1 and np.abs(a - b).mean() < 0.5


def test_inception_crop_flip_seeded_eager_and_dataset():
    img = smooth_image(240, 320, seed=2)
    seed = tf.constant([7, 11], tf.int64)
    a = d.inception_crop_flip(img, size=96, seed=seed).numpy()
    b = in_dataset(lambda x: d.inception_crop_flip(x, size=96, seed=seed), img)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    outs = [d.inception_crop_flip(img, size=96, seed=[s, 0]).numpy() for s in range(6)]
    assert len({o.tobytes() for o in outs}) == 6
    # fused decode-and-crop from JPEG bytes picks the same window
    enc = jpeg_bytes(img, quality=98)
    from_bytes = d.inception_crop_flip(enc, size=96, seed=seed).numpy()
    from_tensor = d.inception_crop_flip(tf.io.decode_jpeg(enc), size=96, seed=seed).numpy()
    assert np.abs(from_bytes.astype(int) - from_tensor.astype(int)).max() <= 3
    # per-element seeds inside tf.data
    ds = (
        tf.data.Dataset.from_tensors(img)
        .repeat(4)
        .enumerate()
        .map(lambda i, x: d.inception_crop_flip(x, size=32, seed=tf.stack([i, i])))
    )
    first = [x.tobytes() for x in ds.as_numpy_iterator()]
    assert first == [x.tobytes() for x in ds.as_numpy_iterator()] and len(set(first)) == 4


def test_inception_crop_window_and_flip():
    img = coord_image(200, 300)
    flips = 0
    for s in range(16):
        out = d.inception_crop_flip(img, size=64, seed=[s, 1]).numpy().astype(int)
        x_left, x_right = out[:, 0, 0].mean(), out[:, -1, 0].mean()
        y_top, y_bottom = out[0, :, 1].mean(), out[-1, :, 1].mean()
        assert y_top < y_bottom  # never flipped vertically
        flips += x_left > x_right
        # the window's area is within area_range of the image (coordinates give its extent)
        frac_w = (abs(x_right - x_left) + 255 / 300) / 255
        frac_h = (y_bottom - y_top + 255 / 200) / 255
        assert 0.08 * 0.8 <= frac_w * frac_h <= 1.0 + 0.05
    assert 2 <= flips <= 14
    # area 1, matching aspect: the whole image, only flipped or not
    whole = d.inception_crop_flip(
        img, size=64, seed=[0, 0], area_range=(1.0, 1.0), aspect_ratio_range=(1.5, 1.5), flip=False
    ).numpy()
    np.testing.assert_array_equal(
        whole,
        tf.image.resize(img, [64, 64], antialias=True)
        .numpy()
        .round()
        .clip(0, 255)
        .astype(np.uint8),
    )


def test_inception_crop_unseeded_runs_in_dataset():
    img = smooth_image(64, 80)
    ds = (
        tf.data.Dataset.from_tensors(img).repeat(3).map(lambda x: d.inception_crop_flip(x, size=32))
    )
    outs = list(ds.as_numpy_iterator())
    assert all(o.shape == (32, 32, 3) for o in outs)


def test_float_range():
    x = np.array([[[0, 128, 255]]], np.uint8)
    np.testing.assert_allclose(
        d.to_float_range(x).numpy(), [[[-1.0, 128 / 127.5 - 1, 1.0]]], atol=1e-6
    )
    np.testing.assert_allclose(
        d.to_float_range(x, low=0.0, high=1.0).numpy(), [[[0.0, 128 / 255, 1.0]]], atol=1e-6
    )
    all_vals = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    np.testing.assert_array_equal(d.from_float_range(d.to_float_range(all_vals)).numpy(), all_vals)
    np.testing.assert_array_equal(in_dataset(d.to_float_range, x), d.to_float_range(x).numpy())


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        d.eval_resize_crop(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="crop_size"):
        d.eval_resize_crop(np.zeros((8, 8, 3), np.uint8), resize_size=16, crop_size=32)
    with pytest.raises(ValueError, match="shape"):
        d.diffusion_downsample(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        d.to_float_range(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="low/high"):
        d.to_float_range(np.zeros(3, np.uint8), low=1.0, high=0.0)


def test_decoded_grey_and_rgba_become_rgb():
    grey = np.full((10, 12), 77, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    out = d.decode_rgb(buf.getvalue()).numpy()
    assert out.shape == (10, 12, 3) and (out == 77).all()
