"""The torch-free reader on files written by torch.save (tools/fixtures/make_io_torch.py), and
on hostile files whose payload must never run."""

import builtins
import collections
import io
import json
import os
import pathlib
import pickle
import struct
import sys
import types
import zipfile

import ml_dtypes
import numpy as np
import pytest

from synthaug.io import ALLOWED_GLOBALS, WeightsFileError, load_torch_file, read_state_dict

FIX = pathlib.Path(__file__).parent / "fixtures"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@pytest.fixture(scope="module")
def expected():
    with np.load(FIX / "state_dict_expected.npz") as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data.pop("meta")))
    return data, meta["dtypes"]


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_reads_what_torch_load_reads(expected, layout):
    want, dtypes = expected
    sd = read_state_dict(FIX / f"state_dict_{layout}.pth")
    plain = {k: v for k, v in want.items() if not k.startswith("wrapped.")}
    assert sorted(sd) == sorted(plain)
    for k, ref in plain.items():
        got = sd[k]
        assert got.shape == ref.shape, k
        if dtypes[k] == "bfloat16":
            assert got.dtype == ml_dtypes.bfloat16
            got = got.astype(np.float32)
        else:
            assert got.dtype == ref.dtype, k
        np.testing.assert_array_equal(got, ref, err_msg=k)
        assert got.flags.c_contiguous, k


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_conv_bn_block_and_nesting(layout):
    obj = load_torch_file(FIX / f"state_dict_{layout}.pth")
    assert obj["conv.weight"].shape == (4, 3, 1, 3)
    assert obj["bn.num_batches_tracked"].dtype == np.int64
    assert obj["bn.num_batches_tracked"].shape == ()
    assert set(obj["nested"]) == {"inner", "deeper"}
    assert obj["nested"]["deeper"]["x"].shape == (2, 1)


def test_views_of_one_storage_share_memory_like_torch():
    sd = read_state_dict(FIX / "state_dict_zip.pth")
    # shared_a = base[2:14].view(3, 4) is contiguous: a view into the storage.
    assert sd["shared_a"].base is not None
    # shared_b is strided: a contiguous copy.
    assert sd["shared_b"].flags.c_contiguous and sd["shared_b"].flags.writeable


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_wrapped_checkpoint_yields_its_state_dict(expected, layout):
    want, _ = expected
    sd = read_state_dict(FIX / f"wrapped_{layout}.pt")
    inner = {k.removeprefix("wrapped."): v for k, v in want.items() if k.startswith("wrapped.")}
    assert sorted(sd) == sorted(inner)
    for k, ref in inner.items():
        np.testing.assert_array_equal(sd[k], ref)
    # The full object keeps the metadata.
    full = load_torch_file(FIX / f"wrapped_{layout}.pt")
    assert (full["epoch"], full["best"], full["note"]) == (3, 0.5, "text")


def test_big_endian_zip_archive(tmp_path):
    """A file saved on a big-endian machine: same names, byteorder 'big', swapped storages."""
    src = FIX / "state_dict_zip.pth"
    little = load_torch_file(src)
    dst = tmp_path / "big.pth"
    with zipfile.ZipFile(src) as zin:
        prefix = next(n for n in zin.namelist() if n.endswith("/data.pkl"))[: -len("data.pkl")]
    # Swap every storage according to the dtype the pickle gives it.
    dtypes = {}
    with zipfile.ZipFile(src) as zin:
        for op in _storage_refs(zin.read(prefix + "data.pkl")):
            dtypes[op[0]] = op[1]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == prefix + "byteorder":
                data = b"big"
            elif name.startswith(prefix + "data/"):
                size = dtypes[name.rsplit("/", 1)[1]]
                data = np.frombuffer(data, f"<u{size}").astype(f">u{size}").tobytes()
            zout.writestr(name, data)
    big = load_torch_file(dst)
    for k in ("conv.weight", "f64", "i64", "bf16", "f16", "u8"):
        np.testing.assert_array_equal(big[k], little[k], err_msg=k)


def _storage_refs(pkl: bytes):
    """(key, element size) of each storage a torch zip pickle refers to."""
    sizes = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4}
    sizes.update({"Short": 2, "Char": 1, "Byte": 1, "Bool": 1})

    class Probe(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return name
            return lambda *a, **k: None

        def persistent_load(self, pid):
            refs.append((str(pid[2]), sizes[pid[1].removesuffix("Storage")]))

    refs: list = []
    Probe(io.BytesIO(pkl)).load()
    return refs


# ------------------------------------------------------------------------- hostile files


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


PAYLOADS = {"os.system": _System, "builtins.exec": _Exec}
GLOBAL_NAMES = {
    "os.system": ("posix.system", "os.system"),
    "builtins.exec": ("builtins.exec", "__builtin__.exec"),
}


def _zip_file(path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/byteorder", "little")


def _legacy_file(path, payload: bytes, where: str) -> None:
    parts = [
        pickle.dumps(LEGACY_MAGIC, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        pickle.dumps({"w": 1.0}, protocol=2),
        pickle.dumps([], protocol=2),
    ]
    parts[{"magic": 0, "sys_info": 2, "object": 3, "keys": 4}[where]] = payload
    path.write_bytes(b"".join(parts))


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize(
    "layout", ["zip", "legacy:magic", "legacy:sys_info", "legacy:object", "legacy:keys"]
)
def test_a_hostile_file_is_refused_before_its_payload_runs(tmp_path, layout, payload):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"conv.weight": PAYLOADS[payload](marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if layout == "zip":
        _zip_file(path, evil)
    else:
        _legacy_file(path, evil, layout.split(":")[1])
    for read in (load_torch_file, read_state_dict):
        with pytest.raises(WeightsFileError) as err:
            read(path)
        msg = str(err.value)
        assert msg.startswith(str(path)), msg
        assert any(f"global {g}" in msg for g in GLOBAL_NAMES[payload]), msg
        assert "\n" not in msg
    assert not marker.exists(), "the payload ran"


def test_a_payload_hidden_in_a_real_file_is_refused(tmp_path):
    """The real zip fixture with one tensor replaced by a payload, storages intact."""
    marker = tmp_path / "pwned"
    src = FIX / "state_dict_zip.pth"
    dst = tmp_path / "tampered.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("/data.pkl"):
                data = pickle.dumps({"conv.weight": _Exec(marker)}, protocol=2)
            zout.writestr(name, data)
    with pytest.raises(WeightsFileError, match=r"tampered\.pth: refusing .*exec"):
        read_state_dict(dst)
    assert not marker.exists()


def test_an_allowed_global_cannot_be_changed_by_the_pickle(tmp_path):
    """BUILD on an allow-listed storage type must not alter the reader for later files."""
    # GLOBAL torch FloatStorage; EMPTY_DICT; 'dtype' -> 'O'; SETITEM; BUILD; STOP
    payload = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00Os" + b"b."
    path = tmp_path / "build.pth"
    _zip_file(path, payload)
    with pytest.raises(WeightsFileError, match=r"build\.pth"):
        load_torch_file(path)
    sd = read_state_dict(FIX / "state_dict_zip.pth")
    assert sd["conv.weight"].dtype == np.float32


def test_the_allow_list_is_small():
    assert "collections.OrderedDict" in ALLOWED_GLOBALS
    assert "torch._utils._rebuild_tensor_v2" in ALLOWED_GLOBALS
    assert not any(g.startswith(("builtins.", "os.", "posix.", "numpy.")) for g in ALLOWED_GLOBALS)


# ---------------------------------------------------------------------------- bad files


def test_non_dict_and_missing_storage(tmp_path):
    path = tmp_path / "list.pth"
    _zip_file(path, pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(WeightsFileError, match=r"list\.pth: holds a list, expected a dict"):
        read_state_dict(path)
    src = zipfile.ZipFile(FIX / "state_dict_zip.pth")
    broken = tmp_path / "broken.pth"
    with zipfile.ZipFile(broken, "w") as zf:
        for name in src.namelist():
            if not name.endswith("/data/0"):
                zf.writestr(name, src.read(name))
    with pytest.raises(WeightsFileError, match=r"broken\.pth: storage entry .*data/0"):
        read_state_dict(broken)


def test_garbage_missing_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        read_state_dict(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsFileError, match=r"junk\.pth: not a PyTorch file"):
        read_state_dict(junk)
    data = (FIX / "state_dict_legacy.pth").read_bytes()
    for cut in (16, len(data) // 2, len(data) - 40):
        truncated = tmp_path / f"truncated{cut}.pth"
        truncated.write_bytes(data[:-cut])
        with pytest.raises(WeightsFileError, match=rf"truncated{cut}\.pth"):
            read_state_dict(truncated)


def test_plain_pickle_is_not_a_torch_file(tmp_path):
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsFileError, match=r"plain\.pth: not a PyTorch file"):
        read_state_dict(path)


def test_a_storage_count_that_disagrees_with_the_pickle(tmp_path):
    data = bytearray((FIX / "state_dict_legacy.pth").read_bytes())
    start = _legacy_data_offset(bytes(data))
    (numel,) = struct.unpack("<q", data[start : start + 8])
    data[start : start + 8] = struct.pack("<q", numel + 1)
    path = tmp_path / "count.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match=r"count\.pth: storage .* holds"):
        read_state_dict(path)


def _legacy_data_offset(data: bytes) -> int:
    """Where the storages start in a legacy file (after its five pickles)."""
    f = io.BytesIO(data)

    class Skip(pickle.Unpickler):
        def find_class(self, module, name):
            return lambda *a, **k: None

        def persistent_load(self, pid):
            return None

    for _ in range(5):
        Skip(f).load()
    return f.tell()


def _torch_zip(path, tensors: dict, storage_bytes: bytes, numel: int) -> None:
    """A zip-layout file whose tensors are (offset, size, stride) views of one float storage."""

    class Ref:
        pass

    class Tensor:
        def __init__(self, offset, size, stride):
            self.args = (offset, size, stride)

        def __reduce__(self):
            return (_rebuild_tensor_v2, (Ref(), *self.args, False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", numel) if isinstance(obj, Ref) else None

    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")
    FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage = FloatStorage

    def _rebuild_tensor_v2(*args):
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch_mod, "torch._utils": utils_mod})
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump({k: Tensor(*v) for k, v in tensors.items()})
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", storage_bytes)


def test_tensor_views_are_checked_against_their_storage(tmp_path):
    storage = np.arange(6, dtype="<f4").tobytes()
    ok = tmp_path / "ok.pth"
    _torch_zip(ok, {"a": (1, (2, 2), (1, 2)), "b": (0, (6,), (1,))}, storage, 6)
    sd = read_state_dict(ok)
    np.testing.assert_array_equal(sd["a"], [[1, 3], [2, 4]])
    np.testing.assert_array_equal(sd["b"], np.arange(6))
    for name, view in {
        "past_end": (0, (10,), (1,)),
        "offset": (5, (2,), (1,)),
        "stride": (0, (3, 2), (3, 1)),
        "negative": (0, (2,), (-1,)),
    }.items():
        bad = tmp_path / f"{name}.pth"
        _torch_zip(bad, {"w": view}, storage, 6)
        with pytest.raises(WeightsFileError, match=rf"{name}\.pth: tensor "):
            read_state_dict(bad)
    short = tmp_path / "short.pth"
    _torch_zip(short, {"w": (0, (6,), (1,))}, storage[:-4], 6)
    with pytest.raises(WeightsFileError, match=r"short\.pth: storage .* has 20 bytes, expected 24"):
        read_state_dict(short)
