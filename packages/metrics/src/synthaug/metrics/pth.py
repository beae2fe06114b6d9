"""A safe reader for PyTorch ``.pth`` state dicts that needs neither torch nor pickle trust.

PyTorch writes ``torch.save(state_dict, path)`` in one of two layouts:

* the zip layout (PyTorch >= 1.6): a zip archive ``<name>/data.pkl`` holding a pickle whose
  tensors are persistent-id references ``("storage", StorageType, key, location, numel)`` to
  raw little- or big-endian storages stored as ``<name>/data/<key>`` entries;
* the legacy layout (older releases, and ``_use_new_zipfile_serialization=False``): a magic
  number, a protocol version and a system-info pickle, then the object pickle, then the list
  of storage keys, then each storage as an int64 element count followed by its bytes.

Both are read here with a restricted unpickler that only rebuilds ordered dicts, tensors
(``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``) and storage types; any other
global in the pickle is an error. Tensors come back as NumPy arrays (``bfloat16`` as float32).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

__all__ = ["PthFormatError", "read_torch_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Storage type name -> (NumPy dtype string without byte order, element size).
_STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "DoubleStorage": ("f8", 8),
    "FloatStorage": ("f4", 4),
    "HalfStorage": ("f2", 2),
    "BFloat16Storage": ("bf16", 2),
    "LongStorage": ("i8", 8),
    "IntStorage": ("i4", 4),
    "ShortStorage": ("i2", 2),
    "CharStorage": ("i1", 1),
    "ByteStorage": ("u1", 1),
    "BoolStorage": ("b1", 1),
}


class PthFormatError(ValueError):
    """A file is not a PyTorch state dict this reader can read safely."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype, self.itemsize = _STORAGE_DTYPES[name]


class _Storage:
    """A storage's raw bytes and element type; becomes an array on first use."""

    def __init__(self, stype: _StorageType, data: bytes, byteorder: str):
        self.stype = stype
        self.data = data
        self.byteorder = byteorder
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self._array is None:
            order = "<" if self.byteorder == "little" else ">"
            if self.stype.dtype == "bf16":
                raw = np.frombuffer(self.data, dtype=np.dtype(order + "u2"))
                self._array = (raw.astype(np.uint32) << 16).view(np.float32)
            elif self.stype.dtype == "b1":
                self._array = np.frombuffer(self.data, dtype=np.bool_)
            else:
                dt = np.dtype(order + self.stype.dtype)
                self._array = np.frombuffer(self.data, dtype=dt).astype(dt.newbyteorder("="))
        return self._array


class _StorageView:
    """A legacy-layout view into part of another storage."""

    def __init__(self, base: _Storage, offset: int, numel: int):
        self.base, self.offset, self.numel = base, offset, numel

    def array(self) -> np.ndarray:
        return self.base.array()[self.offset : self.offset + self.numel]


class _Deferred:
    """A legacy-layout tensor: its storage bytes come after the pickle, so it is built last."""

    def __init__(self, args, kwargs):
        self.args, self.kwargs = args, kwargs


def _defer_tensor(*args, **kwargs):
    return _Deferred(args, kwargs)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_args, **_kwargs):
    if not isinstance(storage, _Storage | _StorageView):
        raise PthFormatError(f"tensor storage is a {type(storage).__name__}, expected a storage")
    flat = storage.array()
    itemsize = flat.dtype.itemsize
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if size and min(size) == 0:
        return np.zeros(size, dtype=flat.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if storage_offset < 0 or last >= flat.size or min(stride, default=0) < 0:
        raise PthFormatError(
            f"tensor of size {size}, stride {stride}, offset {storage_offset} does not fit "
            f"its storage of {flat.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view, order="C")  # a contiguous, writable copy


def _rebuild_parameter(data, *_args, **_kwargs):
    return data


def _rebuild_parameter_with_state(data, *_args, **_kwargs):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage, *, deferred: bool = False):
        super().__init__(file)
        self._load_storage = load_storage
        self._deferred = deferred

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _defer_tensor if self._deferred else _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch._utils" and name == "_rebuild_parameter_with_state":
            return _rebuild_parameter_with_state
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise PthFormatError(
            f"the pickle references {module}.{name}; only state dicts of tensors are accepted"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise PthFormatError(f"unexpected persistent id {pid!r}, expected a storage reference")
        stype, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, _StorageType):
            raise PthFormatError(f"unknown storage type {stype!r}")
        storage = self._load_storage(str(key), stype, int(numel))
        if view is not None:  # legacy views: (view_key, offset, view_size)
            _vkey, offset, vsize = view
            storage = _StorageView(storage, int(offset), int(vsize))
        return storage


def _read_zip(path: str, zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise PthFormatError(f"{path}: expected one '<name>/data.pkl' entry in the zip archive")
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
        if byteorder not in ("little", "big"):
            raise PthFormatError(f"{path}: unknown byte order {byteorder!r}")
    cache: dict[str, _Storage] = {}

    def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
        if key not in cache:
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise PthFormatError(f"{path}: storage entry {entry!r} is missing")
            data = zf.read(entry)
            if len(data) < numel * stype.itemsize:
                raise PthFormatError(
                    f"{path}: storage {entry!r} has {len(data)} bytes, expected "
                    f"{numel * stype.itemsize}"
                )
            cache[key] = _Storage(stype, data[: numel * stype.itemsize], byteorder)
        return cache[key]

    return _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()


def _read_legacy(path: str, f) -> Any:
    try:
        magic = pickle.load(f)
        protocol = pickle.load(f)
        sys_info = pickle.load(f)
    except Exception as e:
        raise PthFormatError(f"{path}: not a PyTorch file ({type(e).__name__}: {e})") from None
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise PthFormatError(f"{path}: not a PyTorch file (bad magic number or protocol)")
    byteorder = "little"
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        byteorder = "big"
    types: dict[str, tuple[_StorageType, int]] = {}
    storages: dict[str, _Storage] = {}

    def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
        # Data follows the pickle: hand out placeholders now, fill them in below.
        types.setdefault(key, (stype, numel))
        if key not in storages:
            storages[key] = _Storage(stype, b"", byteorder)
        return storages[key]

    obj = _RestrictedUnpickler(f, load_storage, deferred=True).load()
    keys = pickle.load(f)
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise PthFormatError(f"{path}: truncated storage data for key {key!r}")
        (numel,) = struct.unpack("<q" if byteorder == "little" else ">q", header)
        if key not in types:
            raise PthFormatError(f"{path}: storage {key!r} is not referenced by the pickle")
        stype = types[key][0]
        data = f.read(numel * stype.itemsize)
        if len(data) != numel * stype.itemsize:
            raise PthFormatError(f"{path}: truncated storage data for key {key!r}")
        storages[key].data = data

    def resolve(o):
        if isinstance(o, _Deferred):
            return _rebuild_tensor_v2(*o.args, **o.kwargs)
        if isinstance(o, dict):
            return type(o)((k, resolve(v)) for k, v in o.items())
        if isinstance(o, list | tuple):
            return type(o)(resolve(v) for v in o)
        return o

    return resolve(obj)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict (``torch.save(module.state_dict(), path)``) without torch.

    Args:
      path: a ``.pth``/``.pt`` file in PyTorch's zip or legacy serialization layout, holding a
        (possibly nested) dict of tensors.

    Returns:
      A flat dict from dotted parameter name to a NumPy array (bfloat16 tensors as float32).

    Raises:
      FileNotFoundError: the file does not exist.
      PthFormatError: the file is not a state dict of tensors in a known layout, or its pickle
        references anything other than tensors, storages and ordered dicts.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch state dict file not found: {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            obj = _read_zip(path, zf)
    else:
        with open(path, "rb") as f:
            obj = _read_legacy(path, f)
    if not isinstance(obj, dict):
        raise PthFormatError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    out: dict[str, np.ndarray] = {}

    def flatten(prefix: str, d: dict) -> None:
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                flatten(name + ".", v)
            elif isinstance(v, np.ndarray):
                out[name] = v
            elif isinstance(v, int | float | str | bool | type(None)):
                continue  # metadata such as "epoch"
            else:
                raise PthFormatError(f"{path}: entry {name!r} is a {type(v).__name__}")

    flatten("", obj)
    return out
