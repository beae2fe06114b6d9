"""Import torchvision / timm classifier weights (``.pth`` or ``.safetensors``) without torch.

A ``.pth`` file written by ``torch.save`` is a zip archive: ``<name>/data.pkl`` is a pickle
whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
calls, and each storage is a persistent id ``("storage", <torch.FloatStorage>, key, device,
numel)`` naming the raw little-endian bytes in ``<name>/data/<key>``. :func:`read_pth` reads
that with a restricted unpickler that only resolves those few names (anything else is
refused), so loading a file cannot run arbitrary code. ``.safetensors`` is an 8-byte header
length, a JSON header and raw bytes.

:func:`convert_state_dict` maps a torchvision ResNet (also timm ResNet / ResNet-RS, which
share the names), a timm ``VisionTransformer`` or a torchvision ``VisionTransformer``
``state_dict`` onto this package's modules and checks every shape against the module.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import struct
import zipfile
from typing import Any

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np

from synthaug.classifiers.models import init_shapes
from synthaug.classifiers.resnet import ResNet
from synthaug.classifiers.vit import VisionTransformer

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("bool"),
}

_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}


class CheckpointFormatError(ValueError):
    """A weights file that is not a readable torch zip / safetensors file."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *a):
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in stride):
        raise CheckpointFormatError(f"negative tensor stride {stride}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if n > 0)
    if size and min(size) > 0 and last >= storage.size:
        raise CheckpointFormatError(
            f"tensor of size {size} stride {stride} at offset {offset} overruns its storage "
            f"of {storage.size} elements"
        )
    if not size:
        return storage[offset : offset + 1].reshape(()).copy()
    if min(size) == 0:
        return np.zeros(size, storage.dtype)
    base = storage[offset:]
    out = np.lib.stride_tricks.as_strided(
        base, shape=size, strides=[s * storage.itemsize for s in stride], writeable=False
    )
    return np.array(out)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *a):
    return data


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, big_endian: bool):
        super().__init__(file)
        self._zip = archive
        self._prefix = prefix
        self._big = big_endian
        self._cache: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only tensors, storages and OrderedDicts are "
            "allowed in a weights file"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if key not in self._cache:
            try:
                raw = self._zip.read(f"{self._prefix}data/{key}")
            except KeyError as e:
                raise CheckpointFormatError(f"storage {key!r} missing from the archive") from e
            dtype = storage_type.dtype
            if self._big and dtype.itemsize > 1:
                dtype = dtype.newbyteorder(">")
            arr = np.frombuffer(raw, dtype=dtype)
            self._cache[key] = arr.astype(arr.dtype.newbyteorder("=")) if self._big else arr
        return self._cache[key]


def read_pth(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``torch.save`` zip file into nested dicts of numpy arrays (no torch needed).

    Args:
      path: a ``.pth`` / ``.pt`` / ``.bin`` file written by ``torch.save`` (zip format,
        torch >= 1.6).

    Returns:
      the unpickled object with tensors as numpy arrays.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointFormatError(
            f"{path} is not a torch zip archive (legacy torch.save files written with "
            "_use_new_zipfile_serialization=False are not supported)"
        )
    with zipfile.ZipFile(path) as archive:
        pkls = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pkls) != 1:
            raise CheckpointFormatError(f"{path}: expected one data.pkl entry, found {pkls}")
        prefix = pkls[0][: -len("data.pkl")]
        big = False
        if f"{prefix}byteorder" in archive.namelist():
            big = archive.read(f"{prefix}byteorder").decode().strip() == "big"
        with archive.open(pkls[0]) as f:
            return _TorchUnpickler(f, archive, prefix, big).load()


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into a dict of numpy arrays (bf16 via ml_dtypes).

    Args:
      path: the file.

    Returns:
      ``{name: array}``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise CheckpointFormatError(f"{path} is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise CheckpointFormatError(f"{path}: header length {n} exceeds the file size")
    try:
        header = json.loads(blob[8 : 8 + n])
    except json.JSONDecodeError as e:
        raise CheckpointFormatError(f"{path}: safetensors header is not JSON") from e
    data = memoryview(blob)[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {name!r} has dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise CheckpointFormatError(f"{path}: tensor {name!r} offsets out of range")
        arr = np.frombuffer(data[begin:end], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A flat ``{name: array}`` state dict from a ``.safetensors`` or torch zip file.

    Checkpoints that wrap the state dict (``{"model": ...}``, ``{"state_dict": ...}``, as
    DeiT and many training scripts save them) are unwrapped; a ``module.`` prefix
    (DataParallel) is removed.

    Args:
      path: weights file.

    Returns:
      ``{name: numpy array}``.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        sd = read_safetensors(path)
    else:
        sd = read_pth(path)
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
            break
    if not isinstance(sd, dict):
        raise CheckpointFormatError(f"{path} does not hold a state dict (got {type(sd)})")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, np.ndarray):
            raise CheckpointFormatError(f"{path}: entry {k!r} is not a tensor ({type(v)})")
        out[k.removeprefix("module.")] = v
    return out


# --------------------------------------------------------------------------- name mapping
def _conv_kernel(w):
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _linear_kernel(w):
    return np.transpose(w)  # (out, in) -> (in, out)


def _map_bn(prefix_path, leaf):
    return {
        "weight": ("params", prefix_path + ("scale",)),
        "bias": ("params", prefix_path + ("bias",)),
        "running_mean": ("batch_stats", prefix_path + ("mean",)),
        "running_var": ("batch_stats", prefix_path + ("var",)),
    }.get(leaf)


def _resnet_key(key: str, sd: dict) -> tuple[str, tuple, Any] | None:
    """torchvision/timm ResNet name -> (collection, path, transform); None to skip."""
    parts = key.split(".")
    leaf = parts[-1]
    if leaf == "num_batches_tracked":
        return None
    if parts[0] == "fc":
        return (
            "params",
            ("fc", "kernel" if leaf == "weight" else "bias"),
            _linear_kernel if leaf == "weight" else None,
        )
    if parts[0] in ("conv1", "bn1", "maxpool") and not parts[0].startswith("layer"):
        mod = parts[0] if len(parts) == 2 else f"{parts[0]}_{parts[1]}"
        is_conv = (parts[0] == "conv1" and len(parts) == 2) or (
            len(parts) == 3 and leaf == "weight" and sd[key].ndim == 4
        )
        if is_conv:
            return ("params", (mod, "kernel"), _conv_kernel)
        m = _map_bn((mod,), leaf)
        return (m[0], m[1], None) if m else None
    match = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", key)
    if not match:
        raise KeyError(f"unexpected ResNet state_dict entry {key!r}")
    block = f"layer{match.group(1)}_{match.group(2)}"
    rest = match.group(3).split(".")
    if rest[0] == "downsample":
        # torchvision: downsample.0 conv, .1 bn; timm avg_down: .0 pool, .1 conv, .2 bn.
        idx = int(rest[1])
        bprefix = f"layer{match.group(1)}.{match.group(2)}.downsample"
        avg_down = f"{bprefix}.2.weight" in sd
        conv_idx, bn_idx = (1, 2) if avg_down else (0, 1)
        if idx == conv_idx:
            return ("params", (block, "downsample", "conv", "kernel"), _conv_kernel)
        if idx == bn_idx:
            m = _map_bn((block, "downsample", "bn"), rest[2])
            return (m[0], m[1], None) if m else None
        raise KeyError(f"unexpected ResNet state_dict entry {key!r}")
    if rest[0] == "se":  # timm SEModule: se.fc1 / se.fc2 1x1 convs with bias
        return (
            "params",
            (block, "se", rest[1], "kernel" if rest[2] == "weight" else "bias"),
            _conv_kernel if rest[2] == "weight" else None,
        )
    if rest[0].startswith("conv"):
        return ("params", (block, rest[0], "kernel"), _conv_kernel)
    if rest[0].startswith("bn"):
        m = _map_bn((block, rest[0]), rest[1])
        return (m[0], m[1], None) if m else None
    raise KeyError(f"unexpected ResNet state_dict entry {key!r}")


_TIMM_VIT_LINEAR = {
    "attn.qkv": ("attn", "qkv"),
    "attn.proj": ("attn", "proj"),
    "mlp.fc1": ("mlp", "fc1"),
    "mlp.fc2": ("mlp", "fc2"),
}
_TV_VIT_LINEAR = {
    "self_attention.out_proj": ("attn", "proj"),
    "mlp.0": ("mlp", "fc1"),
    "mlp.3": ("mlp", "fc2"),
    "mlp.linear_1": ("mlp", "fc1"),
    "mlp.linear_2": ("mlp", "fc2"),
}


def _ln(path, leaf):
    return ("params", path + ("scale" if leaf == "weight" else "bias",), None)


def _dense(path, leaf):
    if leaf == "weight":
        return ("params", path + ("kernel",), _linear_kernel)
    return ("params", path + ("bias",), None)


def _timm_vit_key(key: str, sd: dict):
    if key in ("cls_token", "dist_token", "pos_embed"):
        return ("params", (key,), None)
    if key.startswith("patch_embed.proj."):
        leaf = key.rsplit(".", 1)[1]
        return (
            "params",
            ("patch_embed", "kernel" if leaf == "weight" else "bias"),
            _conv_kernel if leaf == "weight" else None,
        )
    if key.startswith(("norm.", "fc_norm.")) and key.split(".")[0] == "norm":
        return _ln(("norm",), key.split(".")[1])
    if key.startswith(("head.", "head_dist.")):
        mod, leaf = key.split(".")
        return _dense((mod,), leaf)
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)
    if m:
        block, sub, leaf = f"blocks_{m.group(1)}", m.group(2), m.group(3)
        if sub in ("norm1", "norm2"):
            return _ln((block, sub), leaf)
        if sub in _TIMM_VIT_LINEAR:
            return _dense((block,) + _TIMM_VIT_LINEAR[sub], leaf)
    raise KeyError(f"unexpected timm ViT state_dict entry {key!r}")


def _tv_vit_key(key: str, sd: dict):
    if key == "class_token":
        return ("params", ("cls_token",), None)
    if key == "encoder.pos_embedding":
        return ("params", ("pos_embed",), None)
    if key.startswith("conv_proj."):
        leaf = key.split(".")[1]
        return (
            "params",
            ("patch_embed", "kernel" if leaf == "weight" else "bias"),
            _conv_kernel if leaf == "weight" else None,
        )
    if key.startswith("encoder.ln."):
        return _ln(("norm",), key.split(".")[2])
    if key.startswith("heads.head."):
        return _dense(("head",), key.split(".")[2])
    m = re.fullmatch(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)", key)
    if m:
        block, sub = f"blocks_{m.group(1)}", m.group(2)
        if sub == "self_attention.in_proj_weight":
            return ("params", (block, "attn", "qkv", "kernel"), _linear_kernel)
        if sub == "self_attention.in_proj_bias":
            return ("params", (block, "attn", "qkv", "bias"), None)
        mod, leaf = sub.rsplit(".", 1)
        if mod in ("ln_1", "ln_2"):
            return _ln((block, "norm1" if mod == "ln_1" else "norm2"), leaf)
        if mod in _TV_VIT_LINEAR:
            return _dense((block,) + _TV_VIT_LINEAR[mod], leaf)
    raise KeyError(f"unexpected torchvision ViT state_dict entry {key!r}")


def detect_layout(state_dict: dict) -> str:
    """``"resnet"``, ``"timm_vit"`` or ``"torchvision_vit"`` from the entry names."""
    if "patch_embed.proj.weight" in state_dict:
        return "timm_vit"
    if "conv_proj.weight" in state_dict:
        return "torchvision_vit"
    if "layer1.0.conv1.weight" in state_dict:
        return "resnet"
    raise KeyError(
        "unrecognised state_dict: expected torchvision/timm ResNet ('layer1.0.conv1.weight'), "
        "timm ViT ('patch_embed.proj.weight') or torchvision ViT ('conv_proj.weight') names; "
        f"got e.g. {sorted(state_dict)[:5]}"
    )


def _set(tree: dict, path: tuple, value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    if path[-1] in tree:
        raise KeyError(f"two state_dict entries map to {'/'.join(path)}")
    tree[path[-1]] = value


def convert_state_dict(state_dict: dict[str, np.ndarray], model: nn.Module) -> dict[str, Any]:
    """Map a torchvision/timm state dict onto ``model``'s variables, checking every shape.

    Args:
      state_dict: ``{name: array}`` (from :func:`load_state_dict`).
      model: the target module (:func:`get_model`), e.g. ``get_model("resnet50")``.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` only for ResNets), numpy
      float32 leaves, ready for ``model.apply``.
    """
    layout = detect_layout(state_dict)
    if layout == "resnet" and not isinstance(model, ResNet):
        raise ValueError(f"state_dict is a ResNet but the model is {type(model).__name__}")
    if layout != "resnet" and not isinstance(model, VisionTransformer):
        raise ValueError(f"state_dict is a ViT but the model is {type(model).__name__}")
    mapper = {"resnet": _resnet_key, "timm_vit": _timm_vit_key, "torchvision_vit": _tv_vit_key}
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        m = mapper[layout](key, state_dict)
        if m is None:
            continue
        coll, path, fn = m
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating) or arr.dtype == ml_dtypes.bfloat16:
            arr = arr.astype(np.float32)
        _set(out, (coll,) + path, fn(arr) if fn else arr)
    # Check against the module's own shapes.
    size = model.image_size if isinstance(model, VisionTransformer) else 64
    exp_flat = {
        "/".join(getattr(k, "key", str(k)) for k in p): tuple(v.shape)
        for p, v in jax.tree_util.tree_flatten_with_path(init_shapes(model, size))[0]
    }
    got_flat = {
        "/".join(getattr(k, "key", str(k)) for k in p): tuple(v.shape)
        for p, v in jax.tree_util.tree_flatten_with_path(out)[0]
    }
    missing = sorted(set(exp_flat) - set(got_flat))
    extra = sorted(set(got_flat) - set(exp_flat))
    if missing or extra:
        raise KeyError(
            f"state_dict does not match the model: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {extra[:8]}"
        )
    bad = [f"{k}: {got_flat[k]} vs {exp_flat[k]}" for k in exp_flat if got_flat[k] != exp_flat[k]]
    if bad:
        raise ValueError(f"state_dict shapes do not match the model: {bad[:8]}")
    return out


def load_torch_weights(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """:func:`load_state_dict` then :func:`convert_state_dict`.

    Args:
      path: ``.pth`` or ``.safetensors`` file of a torchvision/timm ResNet or ViT.
      model: the matching module from :func:`get_model`.

    Returns:
      the Flax variables dict.
    """
    return convert_state_dict(load_state_dict(path), model)
