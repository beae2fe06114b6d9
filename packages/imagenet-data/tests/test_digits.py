import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from synthaug import imagenet_data as d


@pytest.mark.parametrize("size", [16, 32])
def test_arrays_shapes_and_split(size):
    xtr, ytr = d.digits_arrays("train", size)
    xte, yte = d.digits_arrays("test", size)
    assert xtr.shape == (1438, size, size, 3) and xte.shape == (359, size, size, 3)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int32
    assert len(ytr) + len(yte) == 1797
    # stratified: 20% of every class in test
    per_class = np.bincount(load_digits().target, minlength=10)
    n_test = np.round(per_class * 0.2).astype(int)
    assert np.array_equal(np.bincount(yte, minlength=10), n_test)
    assert np.array_equal(np.bincount(ytr, minlength=10), per_class - n_test)
    # grey images repeated over RGB, full uint8 range used
    assert np.array_equal(xtr[..., 0], xtr[..., 2])
    assert xtr.max() > 200 and xtr.min() == 0


def test_split_is_fixed_disjoint_and_faithful():
    src = load_digits()
    grey = np.round(src.images * 255 / 16).astype(np.float64)
    xtr, ytr = d.digits_arrays("train", 16)
    xte, yte = d.digits_arrays("test", 16)

    # downsample each 16x16 back to 8x8 by 2x2 means and match it to its source image
    def to8(x):
        return x[..., 0].astype(np.float64).reshape(-1, 8, 2, 8, 2).mean((2, 4))

    flat = grey.reshape(len(grey), -1)

    def nearest(x):  # index of the closest source image (squared distance via a matmul)
        a = to8(x).reshape(len(x), -1)
        dist = (a**2).sum(1)[:, None] + (flat**2).sum(1)[None] - 2 * a @ flat.T
        return dist.argmin(1)

    idx_tr, idx_te = nearest(xtr), nearest(xte)
    assert np.array_equal(src.target[idx_tr], ytr)
    assert np.array_equal(src.target[idx_te], yte)
    assert len(set(idx_tr) & set(idx_te)) == 0
    again = d.digits_arrays("test", 16)
    assert np.array_equal(again[0], xte) and np.array_equal(again[1], yte)


def test_dataset_interface():
    ds = d.digits("test", 16)
    x, y = next(iter(ds))
    assert x.dtype.name == "uint8" and tuple(x.shape) == (16, 16, 3) and y.dtype.name == "int32"
    xs, ys = d.digits_arrays("test", 16)
    got = np.stack([a for a, _ in ds.as_numpy_iterator()])
    assert np.array_equal(got, xs)
    assert d.DIGITS_CLASS_NAMES[0] == "zero" and d.DIGITS_CLASS_NAMES[9] == "nine"
    assert d.digits_class_name(3) == "three"


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        d.digits_arrays("val", 16)
    with pytest.raises(ValueError, match="size"):
        d.digits("train", 28)
    with pytest.raises(KeyError, match="label"):
        d.digits_class_name(10)


def test_bundled_file_read_directly_equals_load_digits():
    import importlib

    raw = importlib.import_module("synthaug.imagenet_data.digits")._load_digits()
    ref = load_digits()
    assert np.array_equal(raw[0], ref.images) and np.array_equal(raw[1], ref.target)


def test_digits_class_tables_and_synthetic_shards_do_not_import_tensorflow(tmp_path):
    # TensorFlow takes many seconds to import; only the tf.data parts of the package load it.
    code = (
        "import sys, numpy as np; from synthaug import imagenet_data as d; "
        "x, y = d.digits_arrays('test', 16); d.class_names(); d.DataReport; "
        f"w = d.SyntheticShardWriter({str(tmp_path)!r}, shard_size=7); w.write(x[:10], y[:10]); "
        f"w.close(); back = list(d.iter_synthetic({str(tmp_path)!r})); "
        "assert np.array_equal(np.stack([a for a, _ in back]), x[:10]); "
        "assert [b for _, b in back] == y[:10].tolist(); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert 'sklearn' not in sys.modules, 'sklearn imported'; "
        "assert callable(d.digits) and callable(d.mix) and 'tensorflow' in sys.modules; "
        "missing = [n for n in d.__all__ if not hasattr(d, n)]; "
        "assert not missing, missing"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
