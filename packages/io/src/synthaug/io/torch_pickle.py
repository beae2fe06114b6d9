"""The one reader of PyTorch ``torch.save`` files (``.pth``, ``.pt``, ``.bin``): no code runs.

A file written by ``torch.save`` is a pickle, and unpickling an untrusted pickle runs whatever
callables it names. Every pickle in such a file is read here by one restricted unpickler whose
``find_class`` resolves only an allow-list (:data:`ALLOWED_GLOBALS`): ordered dicts, the tensor
and parameter rebuild functions and the storage types. Any other global (``os.system``,
``builtins.exec``, ``numpy`` scalars, argparse namespaces, ...) stops the read with a
:class:`WeightsFileError` that names the file and the global, before anything is called.

PyTorch writes one of two layouts:

* the zip layout (``torch>=1.6``, the default): an archive holding ``<name>/data.pkl``, whose
  tensors refer through persistent ids ``("storage", StorageType, key, location, numel)`` to the
  raw storages ``<name>/data/<key>`` (byte order in ``<name>/byteorder``, little if absent);
* the legacy layout (older releases, ``_use_new_zipfile_serialization=False``): five pickles in a
  row (magic number, protocol version, system information, the object, the list of storage keys)
  followed by each storage as an int64 element count and its bytes.

Tensors come back as NumPy arrays of the same dtype (``bfloat16`` as ``ml_dtypes.bfloat16``).
Tensors that share a storage share memory, as they do in torch.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np

from synthaug.io.errors import WeightsFileError

__all__ = ["ALLOWED_GLOBALS", "load_torch_file", "read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage type name -> element dtype (little-endian; byte-swapped for big-endian files).
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc. in the pickle: only its dtype matters."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __setstate__(self, state):
        raise WeightsFileError(f"a pickle tried to change torch.{self.name}")

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A storage's elements as a flat array; filled after the pickle in the legacy layout."""

    def __init__(self, stype: _StorageType, numel: int):
        self.stype = stype
        self.numel = numel
        self.flat: np.ndarray | None = None


class _Tensor:
    """A ``_rebuild_tensor_v2`` call, built into an array once every storage is filled."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_args, **_kwargs) -> _Tensor:
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_args, **_kwargs):
    return data


def _rebuild_parameter_with_state(data, *_args, **_kwargs):
    return data


def _fresh(fn):
    # A new callable for each reference, so that a pickle's BUILD opcode can only change a
    # throw-away object, never state shared between reads.
    return lambda *args, **kwargs: fn(*args, **kwargs)


_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _fresh(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): lambda: _fresh(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _fresh(
        _rebuild_parameter_with_state
    ),
    **{("torch", name): (lambda name=name: _StorageType(name)) for name in _STORAGE_DTYPES},
}

#: The only globals a pickle in a weights file may name, as ``"module.name"``.
ALLOWED_GLOBALS: frozenset[str] = frozenset(f"{m}.{n}" for m, n in _ALLOWED)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; storages through ``load_storage``."""

    def __init__(self, file, path: str, load_storage: Callable[[str, _StorageType, int], Any]):
        super().__init__(file)
        self._path = path
        self._load_storage = load_storage

    def find_class(self, module: str, name: str):
        make = _ALLOWED.get((module, name))
        if make is None:
            raise WeightsFileError(
                f"{self._path}: refusing to load the global {module}.{name}: a weights file "
                "may only hold tensors, storages and dicts"
            )
        return make()

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsFileError(
                f"{self._path}: unexpected persistent id {pid!r:.80}, expected a storage reference"
            )
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType):
            raise WeightsFileError(f"{self._path}: unknown storage type {stype!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsFileError(f"{self._path}: storage views (torch<1.0) are not supported")
        if not isinstance(numel, int) or numel < 0:
            raise WeightsFileError(f"{self._path}: storage {key!r} has a bad size {numel!r:.80}")
        return self._load_storage(str(key), stype, numel)


def _unpickle(data, path: str, load_storage=None) -> Any:
    def no_storage(key, _stype, _numel):
        raise WeightsFileError(f"{path}: unexpected storage reference {key!r} in a header")

    f = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return _RestrictedUnpickler(f, path, load_storage or no_storage).load()
    except WeightsFileError as e:
        if str(e).startswith(path):
            raise
        raise WeightsFileError(f"{path}: {e}") from None
    except Exception as e:  # truncated or malformed pickle data
        raise WeightsFileError(
            f"{path}: not a PyTorch file ({type(e).__name__}: {str(e)[:120]})"
        ) from None


def _to_native(buf: bytearray | bytes, dtype: np.dtype, big_endian: bool) -> np.ndarray:
    if big_endian and dtype.itemsize > 1 and dtype != np.dtype(ml_dtypes.bfloat16):
        return np.frombuffer(buf, dtype.newbyteorder(">")).astype(dtype)
    if big_endian and dtype == np.dtype(ml_dtypes.bfloat16):
        return np.frombuffer(buf, ">u2").astype("<u2").view(dtype)
    return np.frombuffer(buf, dtype)


def _build(path: str, t: _Tensor) -> np.ndarray:
    storage = t.storage
    if not isinstance(storage, _Storage) or storage.flat is None:
        raise WeightsFileError(f"{path}: a tensor refers to a missing storage")
    flat = storage.flat
    try:
        offset = int(t.offset)
        size = tuple(int(s) for s in t.size)
        stride = tuple(int(s) for s in t.stride)
    except (TypeError, ValueError):
        raise WeightsFileError(f"{path}: a tensor has a malformed size or stride") from None
    if len(size) != len(stride) or min(size, default=1) < 0 or min(stride, default=0) < 0:
        raise WeightsFileError(f"{path}: tensor size {size} and stride {stride} do not match")
    if min(size, default=1) == 0:
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or last >= flat.size:
        raise WeightsFileError(
            f"{path}: tensor of size {size}, stride {stride} at offset {offset} overruns its "
            f"storage of {flat.size} elements"
        )
    numel = int(np.prod(size))
    contiguous = tuple(int(np.prod(size[i + 1 :])) for i in range(len(size)))
    if all(n == 1 or s == c for n, s, c in zip(size, stride, contiguous, strict=True)):
        return flat[offset : offset + numel].reshape(size)  # shares the storage, as in torch
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride)
    )
    return np.array(view, order="C")


def _resolve(path: str, obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        return _build(path, obj)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(path, v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(path, v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(path, v) for v in obj)
    if isinstance(obj, _Storage | _StorageType):
        raise WeightsFileError(f"{path}: holds a bare storage, expected tensors")
    return obj


def _read_zip(path: str, zf: zipfile.ZipFile) -> Any:
    names = set(zf.namelist())
    pkls = sorted(n for n in names if n.endswith("/data.pkl") and n.count("/") == 1)
    if len(pkls) != 1:
        what = "a TorchScript archive" if any(n.endswith("/constants.pkl") for n in names) else ""
        raise WeightsFileError(
            f"{path}: expected one '<name>/data.pkl' entry in the zip archive"
            + (f" (this is {what}; save a state dict with torch.save instead)" if what else "")
        )
    prefix = pkls[0][: -len("data.pkl")]
    big = False
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise WeightsFileError(f"{path}: unknown byte order {order!r:.40}")
        big = order == "big"
    storages: dict[str, _Storage] = {}

    def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
        if key not in storages:
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise WeightsFileError(f"{path}: storage entry {entry!r} is missing")
            nbytes = numel * stype.dtype.itemsize
            if zf.getinfo(entry).file_size < nbytes:
                raise WeightsFileError(
                    f"{path}: storage {entry!r} has {zf.getinfo(entry).file_size} bytes, "
                    f"expected {nbytes}"
                )
            buf = bytearray(nbytes)
            with zf.open(entry) as f:
                f.readinto(memoryview(buf))
            storage = _Storage(stype, numel)
            storage.flat = _to_native(buf, stype.dtype, big)
            storages[key] = storage
        elif storages[key].stype.dtype != stype.dtype:
            raise WeightsFileError(f"{path}: storage {key!r} is used with two dtypes")
        return storages[key]

    with zf.open(pkls[0]) as f:
        obj = _unpickle(f.read(), path, load_storage)
    return _resolve(path, obj)


def _read_legacy(path: str, f) -> Any:
    magic = _unpickle(f, path)
    if magic != _LEGACY_MAGIC:
        raise WeightsFileError(f"{path}: not a PyTorch file (bad magic number)")
    protocol = _unpickle(f, path)
    if protocol != _LEGACY_PROTOCOL:
        raise WeightsFileError(f"{path}: unsupported legacy protocol {protocol!r:.40}")
    sys_info = _unpickle(f, path)
    big = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    storages: dict[str, _Storage] = {}

    def load_storage(key: str, stype: _StorageType, numel: int) -> _Storage:
        # The bytes follow the pickle: hand out empty storages now, fill them in below.
        if key not in storages:
            storages[key] = _Storage(stype, numel)
        elif storages[key].stype.dtype != stype.dtype:
            raise WeightsFileError(f"{path}: storage {key!r} is used with two dtypes")
        return storages[key]

    obj = _unpickle(f, path, load_storage)
    keys = _unpickle(f, path)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WeightsFileError(f"{path}: the storage key list is malformed")
    for key in keys:
        if key not in storages:
            raise WeightsFileError(f"{path}: storage {key!r} is not referenced by the pickle")
        storage = storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise WeightsFileError(f"{path}: truncated storage data for key {key!r}")
        (numel,) = struct.unpack(">q" if big else "<q", header)
        if numel != storage.numel:
            raise WeightsFileError(
                f"{path}: storage {key!r} holds {numel} elements, the pickle says {storage.numel}"
            )
        nbytes = numel * storage.stype.dtype.itemsize
        buf = bytearray(nbytes)
        if f.readinto(memoryview(buf)) != nbytes:
            raise WeightsFileError(f"{path}: truncated storage data for key {key!r}")
        storage.flat = _to_native(buf, storage.stype.dtype, big)
    missing = sorted(k for k, s in storages.items() if s.flat is None)
    if missing:
        raise WeightsFileError(f"{path}: storages {missing[:5]} have no data")
    return _resolve(path, obj)


def load_torch_file(path: str | os.PathLike) -> Any:
    """Read what ``torch.save`` wrote, without torch and without running any code.

    Args:
      path: a ``.pth`` / ``.pt`` / ``.bin`` file in the zip or the legacy layout.

    Returns:
      The saved object (dicts, lists, tuples, numbers, strings) with every tensor as a NumPy
      array of the tensor's dtype (``bfloat16`` as ``ml_dtypes.bfloat16``).

    Raises:
      FileNotFoundError: there is no such file.
      WeightsFileError: the file is not a ``torch.save`` file, is truncated, or its pickle names
        a global outside :data:`ALLOWED_GLOBALS` (the message names the file and the global;
        nothing in the file has run).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch weights file not found: {path}")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                return _read_zip(path, zf)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise WeightsFileError(f"{path}: damaged zip archive ({e})") from None
    with open(path, "rb") as f:
        return _read_legacy(path, f)


def read_state_dict(
    path: str | os.PathLike, *, unwrap: Sequence[str] = ("state_dict", "model", "model_ema")
) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict as a flat ``{dotted name: array}`` dict, running no code.

    ``torch.save(module.state_dict(), path)`` files (pytorch-fid's Inception, guided-diffusion's
    ``.pt`` models, torchvision and timm weights) read as they are. A checkpoint that wraps the
    state dict, i.e. whose top level holds no tensor but one of the ``unwrap`` keys
    (``{"state_dict": ..., "epoch": 3}``, ``{"model": ..., "optimizer": ...}``), yields the
    first such entry. Nested dicts are flattened with dots; numbers, strings and ``None``
    (metadata such as ``"epoch"``) are skipped.

    Args:
      path: a ``torch.save`` file, zip or legacy layout.
      unwrap: the wrapper keys looked for, in order.

    Returns:
      ``{name: numpy array}``.

    Raises:
      FileNotFoundError: there is no such file.
      WeightsFileError: see :func:`load_torch_file`; also a file that holds no dict of tensors.
    """
    path = os.fspath(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise WeightsFileError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    if not any(isinstance(v, np.ndarray) for v in obj.values()):
        for key in unwrap:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    out: dict[str, np.ndarray] = {}

    def flatten(prefix: str, d: dict) -> None:
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                flatten(name + ".", v)
            elif isinstance(v, np.ndarray):
                out[name] = v
            elif not isinstance(v, int | float | str | bool | type(None)):
                raise WeightsFileError(
                    f"{path}: entry {name!r} is a {type(v).__name__}, expected a tensor"
                )

    flatten("", obj)
    if not out:
        raise WeightsFileError(f"{path}: holds no tensors")
    return out
