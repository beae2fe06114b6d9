"""The torch-free .pth reader on files written by torch.save (tools/fixtures/make_metrics_pth.py)."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from synthaug.metrics import PthFormatError, read_torch_state_dict


@pytest.fixture(scope="module")
def expected(fixtures_dir):
    with np.load(fixtures_dir / "state_dict_expected.npz") as f:
        return {k: f[k] for k in f.files if k != "meta"}


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_reads_torch_written_state_dicts(fixtures_dir, expected, layout):
    sd = read_torch_state_dict(fixtures_dir / f"state_dict_{layout}.pth")
    assert sorted(sd) == sorted(expected)
    for k, want in expected.items():
        got = sd[k]
        assert got.dtype == want.dtype, k
        assert got.shape == want.shape, k
        np.testing.assert_array_equal(got, want, err_msg=k)
        assert got.flags.writeable and got.flags.c_contiguous


def test_conv_bn_entries_are_there(fixtures_dir):
    sd = read_torch_state_dict(fixtures_dir / "state_dict_zip.pth")
    assert sd["conv.weight"].shape == (4, 3, 1, 3)
    assert sd["bn.num_batches_tracked"].dtype == np.int64
    assert {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"} <= set(sd)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")


def test_rejects_arbitrary_globals(tmp_path):
    path = tmp_path / "evil.pth"
    _zip_with_pickle(path, pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(PthFormatError, match="system"):
        read_torch_state_dict(path)


def test_rejects_non_dict_and_missing_storage(tmp_path, fixtures_dir):
    path = tmp_path / "list.pth"
    _zip_with_pickle(path, pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(PthFormatError, match="expected a dict"):
        read_torch_state_dict(path)
    # A real file with one storage entry removed.
    src = zipfile.ZipFile(fixtures_dir / "state_dict_zip.pth")
    broken = tmp_path / "broken.pth"
    with zipfile.ZipFile(broken, "w") as zf:
        for name in src.namelist():
            if not name.endswith("/data/0"):
                zf.writestr(name, src.read(name))
    with pytest.raises(PthFormatError, match="data/0"):
        read_torch_state_dict(broken)


def test_rejects_garbage_and_missing_files(tmp_path, fixtures_dir):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_torch_state_dict(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(PthFormatError, match="junk.pth"):
        read_torch_state_dict(junk)
    truncated = tmp_path / "truncated.pth"
    data = (fixtures_dir / "state_dict_legacy.pth").read_bytes()
    truncated.write_bytes(data[:-16])
    with pytest.raises(PthFormatError, match="truncated"):
        read_torch_state_dict(truncated)


def test_plain_pickle_is_not_a_torch_file(tmp_path):
    path = tmp_path / "plain.pth"
    buf = io.BytesIO()
    pickle.dump({"a": 1}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(PthFormatError, match="not a PyTorch file"):
        read_torch_state_dict(path)
