import numpy as np
import pytest

from synthaug.metrics import (
    RunningStats,
    iter_reference_images,
    load_reference_npz,
    reference_statistics,
    save_reference_npz,
)


def _adm_like_file(path, n=10, with_stats=True):
    """A file laid out as the ADM evaluation suite writes it: np.savez, arr_0 + mu/sigma."""
    rs = np.random.RandomState(0)
    images = rs.randint(0, 256, (n, 8, 6, 3)).astype(np.uint8)
    arrays = {"arr_0": images}
    if with_stats:
        arrays.update(
            mu=rs.standard_normal(4), sigma=np.eye(4), mu_s=np.zeros(2), sigma_s=2 * np.eye(2)
        )
    np.savez(path, **arrays)
    return arrays


def test_reads_adm_layout_without_loading_images(tmp_path):
    path = tmp_path / "VIRTUAL_ref.npz"
    arrays = _adm_like_file(path)
    ref = load_reference_npz(path)
    assert ref.num_images == 10 and ref.image_shape == (8, 6, 3) and ref.images is None
    np.testing.assert_array_equal(ref.mu, arrays["mu"])
    np.testing.assert_array_equal(ref.sigma_s, arrays["sigma_s"])
    full = load_reference_npz(path, load_images=True)
    np.testing.assert_array_equal(full.images, arrays["arr_0"])
    batches = list(iter_reference_images(path, batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), arrays["arr_0"])


def test_sample_batch_has_images_only(tmp_path):
    path = tmp_path / "samples.npz"
    _adm_like_file(path, with_stats=False)
    ref = load_reference_npz(path)
    assert ref.mu is None and ref.sigma is None and ref.num_images == 10


def test_save_roundtrip_and_atomic(tmp_path):
    rs = np.random.RandomState(1)
    x = rs.standard_normal((40, 5))
    stats = RunningStats().update(x)
    out = tmp_path / "sub" / "ref.npz"
    save_reference_npz(out, mu=stats.mean, sigma=stats.cov)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ref.npz"]  # no temporary left
    with np.load(out) as f:
        assert sorted(f.files) == ["mu", "sigma"]
        assert f["sigma"].dtype == np.float64
    ref = load_reference_npz(out)
    np.testing.assert_allclose(ref.sigma, np.cov(x, rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match="do not match"):
        save_reference_npz(out, mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(ValueError, match="uint8"):
        save_reference_npz(out, mu=np.zeros(3), sigma=np.eye(3), images=np.zeros((1, 2, 2, 3)))
    ref = load_reference_npz(out)  # the failed writes left the file intact
    assert ref.mu.shape == (5,)


def test_reference_statistics_streams_batches(tmp_path):
    rs = np.random.RandomState(2)
    images = rs.randint(0, 256, (23, 4, 4, 3)).astype(np.uint8)

    def feature_fn(batch):  # any feature function: here mean colour and brightness
        f = batch.reshape(len(batch), -1, 3).mean(axis=1) / 255.0
        return f, None

    path = tmp_path / "stats.npz"
    src = tmp_path / "images.npz"
    np.savez(src, arr_0=images)
    stats = reference_statistics(iter_reference_images(src, batch_size=5), feature_fn, path=path)
    want = images.reshape(23, -1, 3).mean(axis=1) / 255.0
    assert stats.count == 23
    ref = load_reference_npz(path)
    np.testing.assert_allclose(ref.mu, want.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(ref.sigma, np.cov(want, rowvar=False), rtol=1e-10)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        load_reference_npz(tmp_path / "nothere.npz")
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not an .npz"):
        load_reference_npz(tmp_path / "x.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match="arr_0"):
        load_reference_npz(tmp_path / "other.npz")
    np.savez(tmp_path / "half.npz", mu=np.zeros(3), sigma=np.eye(2))
    with pytest.raises(ValueError, match="do not match"):
        load_reference_npz(tmp_path / "half.npz")
