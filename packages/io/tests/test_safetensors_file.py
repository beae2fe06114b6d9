"""The safetensors reader: files written by the safetensors library, and damaged ones."""

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from synthaug.io import SafetensorsFile, WeightsFileError, read_safetensors

TENSORS = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "bf16": np.array([[1.5, -2.0], [0.25, 3.0]], dtype=ml_dtypes.bfloat16),
    "f16": np.array([0.5, 1.0], np.float16),
    "i64": np.array([2**40, -3], np.int64),
    "u8": np.array([0, 255], np.uint8),
    "flag": np.array([True, False]),
    "scalar": np.array(2.5, np.float64),
}


@pytest.fixture
def st_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(TENSORS, str(path), metadata={"format": "np"})
    return path


def test_reads_every_tensor_with_its_dtype(st_file):
    got = read_safetensors(st_file)
    assert sorted(got) == sorted(TENSORS)
    for k, want in TENSORS.items():
        assert got[k].dtype == want.dtype, k
        assert got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want)


def test_lazy_view_reads_the_header_then_one_tensor(st_file):
    with SafetensorsFile(st_file) as f:
        assert sorted(f.names()) == sorted(TENSORS)
        assert f.shape("f32") == (2, 3)
        assert f.dtype("bf16") == "BF16"
        assert f.metadata() == {"format": "np"}
        np.testing.assert_array_equal(f.read("i64"), TENSORS["i64"])
        with pytest.raises(KeyError, match="model.safetensors: no tensor named 'nope'"):
            f.read("nope")


def test_damaged_files_are_named(tmp_path, st_file):
    data = st_file.read_bytes()
    cases = {
        "truncated": data[:-5],
        "junk": b"hello, this is not a weights file",
        "short": b"\x10\x00",
        "badjson": (8).to_bytes(8, "little") + b"{not js}",
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(
            WeightsFileError,
            match=rf"{name}\.safetensors: not a safetensors file, or a damaged or truncated",
        ):
            read_safetensors(path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        read_safetensors(tmp_path / "missing.safetensors")
