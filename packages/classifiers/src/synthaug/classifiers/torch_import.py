"""Import torchvision / timm classifier weights (``.pth`` or ``.safetensors``) without torch.

The files are read by synthaug.io's readers: ``torch.save`` files (zip or legacy layout) by its
restricted unpickler, which resolves only tensors, storages and ordered dicts and refuses any
other global, so loading a file cannot run code; ``.safetensors`` files by the ``safetensors``
library.

:func:`convert_state_dict` maps a torchvision ResNet (also timm ResNet / ResNet-RS, which
share the names), a timm ``VisionTransformer`` or a torchvision ``VisionTransformer``
``state_dict`` onto this package's modules and checks every shape against the module.
"""

from __future__ import annotations

import os
import re
from typing import Any

import flax.linen as nn
import jax
import ml_dtypes
import numpy as np

from synthaug.classifiers.models import init_shapes
from synthaug.classifiers.resnet import ResNet
from synthaug.classifiers.vit import VisionTransformer
from synthaug.io import WeightsFileError as CheckpointFormatError
from synthaug.io import load_torch_file as read_pth
from synthaug.io import read_safetensors, read_state_dict

__all__ = [
    "CheckpointFormatError",
    "convert_state_dict",
    "detect_layout",
    "load_state_dict",
    "load_torch_weights",
    "read_pth",
    "read_safetensors",
]


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A flat ``{name: array}`` state dict from a ``.safetensors`` or ``torch.save`` file.

    Checkpoints that wrap the state dict (``{"model": ...}``, ``{"state_dict": ...}``, as
    DeiT and many training scripts save them) are unwrapped; a ``module.`` prefix
    (DataParallel) is removed.

    Args:
      path: weights file.

    Returns:
      ``{name: numpy array}``.

    Raises:
      FileNotFoundError: no such file.
      CheckpointFormatError: (``synthaug.io.WeightsFileError``) a damaged file, another
        format, or a pickle that names anything but tensors.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        sd = read_safetensors(path)
    else:
        sd = read_state_dict(path, unwrap=("model", "state_dict", "model_ema"))
    return {k.removeprefix("module."): v for k, v in sd.items()}


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
