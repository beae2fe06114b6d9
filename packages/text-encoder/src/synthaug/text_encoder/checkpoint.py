"""Import of T5 v1.1 encoder weights into the Flax params tree of :class:`T5Encoder`.

Two formats are read:

* Hugging Face ``T5EncoderModel`` / ``T5ForConditionalGeneration`` safetensors, a single
  ``model.safetensors`` or shards listed in ``model.safetensors.index.json``, with the
  ``config.json`` beside them (or, without it, the sizes read off the tensor shapes).
  The safetensors files are read one tensor at a time by ``synthaug.io.SafetensorsFile`` (the
  ``safetensors`` library's NumPy API), so bfloat16/float16 checkpoints load without a
  deep-learning framework.
* t5x checkpoints saved with orbax: the parameter tree under ``target`` (or ``params``, or
  the root), with ``token_embedder/embedding`` and ``encoder/...``. Only the encoder
  leaves are restored (a partial restore), so decoder and optimizer state are never read.

Every tensor the encoder needs must be present with the right shape; tensors that belong
to the decoder or the LM head are skipped; anything else is reported by name.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from typing import Any

import jax
import numpy as np

from synthaug.io import SafetensorsFile
from synthaug.text_encoder.config import make_config, validate_config
from synthaug.text_encoder.errors import CheckpointError

# ---------------------------------------------------------------------------- safetensors


class _TensorSource:
    """Tensor names → (file, name) across one or several safetensors files."""

    def __init__(self, files: dict[str, SafetensorsFile], where: dict[str, str]):
        self.files = files
        self.where = where

    def names(self) -> list[str]:
        return list(self.where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.files[self.where[name]].shape(name)

    def read(self, name: str) -> np.ndarray:
        return self.files[self.where[name]].read(name)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _open_hf(path: pathlib.Path) -> tuple[_TensorSource, pathlib.Path]:
    """Open a HF checkpoint; returns the tensor source and the directory holding it."""
    if not path.exists():
        raise FileNotFoundError(f"HF checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        single = path / "model.safetensors"
        if index.is_file():
            path = index
        elif single.is_file():
            path = single
        else:
            found = sorted(p.name for p in path.iterdir())
            raise FileNotFoundError(
                f"HF checkpoint directory {str(path)!r} has neither model.safetensors nor "
                f"model.safetensors.index.json (found: {found[:10]}); PyTorch .bin checkpoints "
                "must be converted to safetensors first"
            )
    if path.name.endswith(".json"):
        try:
            index = json.loads(path.read_text())
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not a dict")
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ValueError(
                f"{str(path)!r} is not a safetensors index (expected JSON with a 'weight_map' "
                f"dict: {e})"
            ) from None
        files: dict[str, SafetensorsFile] = {}
        for shard in sorted(set(weight_map.values())):
            files[shard] = SafetensorsFile(path.parent / shard)
        for name, shard in weight_map.items():
            if name not in files[shard].names():
                raise CheckpointError(
                    f"{str(path)!r} maps {name!r} to {shard!r}, which does not hold it",
                    missing=[name],
                )
        return _TensorSource(files, dict(weight_map)), path.parent
    if path.name.endswith(".safetensors"):
        f = SafetensorsFile(path)
        return _TensorSource({path.name: f}, {n: path.name for n in f.names()}), path.parent
    raise ValueError(
        f"HF checkpoint {str(path)!r}: expected a directory, a .safetensors file or a "
        "model.safetensors.index.json"
    )


# ---------------------------------------------------------------------------- HF import

_HF_IGNORED = re.compile(r"^(decoder\..*|lm_head\.weight|encoder\.embed_tokens\.weight)$")


def _hf_config(source: _TensorSource, folder: pathlib.Path):
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        try:
            hf = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(cfg_path)!r} is not valid JSON: {e}") from None
        proj = hf.get("feed_forward_proj", "relu")
        if proj != "gated-gelu":
            raise ValueError(
                f"{str(cfg_path)!r}: feed_forward_proj is {proj!r}; only T5 v1.1 encoders "
                "(feed_forward_proj='gated-gelu') are supported"
            )
        try:
            return make_config(
                vocab_size=hf["vocab_size"],
                d_model=hf["d_model"],
                d_kv=hf["d_kv"],
                num_heads=hf["num_heads"],
                d_ff=hf["d_ff"],
                num_layers=hf["num_layers"],
                relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
                relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
                layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
            )
        except KeyError as e:
            raise ValueError(f"{str(cfg_path)!r} lacks the T5 config key {e}") from None
    # No config.json: read the sizes off the tensor shapes.
    names = set(source.names())
    emb_name = "shared.weight" if "shared.weight" in names else "encoder.embed_tokens.weight"
    rel = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    needed = [emb_name, rel, "encoder.block.0.layer.0.SelfAttention.q.weight"]
    needed.append("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")
    lacking = [n for n in needed if n not in names]
    if lacking:
        if "encoder.block.0.layer.1.DenseReluDense.wi.weight" in names:
            raise ValueError(
                f"HF checkpoint in {str(folder)!r} is a T5 v1.0 (ReLU MLP) model; only T5 "
                "v1.1 encoders (gated-GELU) are supported"
            )
        raise CheckpointError(
            f"HF checkpoint in {str(folder)!r} has no config.json and lacks {lacking}, so "
            "its sizes cannot be read",
            missing=lacking,
        )
    vocab, d_model = source.shape(emb_name)
    buckets, heads = source.shape(rel)
    inner = source.shape("encoder.block.0.layer.0.SelfAttention.q.weight")[0]
    d_ff = source.shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")[0]
    layers = {int(m.group(1)) for n in names if (m := re.match(r"encoder\.block\.(\d+)\.", n))}
    return make_config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        num_heads=heads,
        d_ff=d_ff,
        num_layers=max(layers) + 1,
        relative_attention_num_buckets=buckets,
    )


def _hf_layout(config) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]]:
    """HF name → (params path, HF shape, transpose?)."""
    d, inner, f = config.d_model, config.num_heads * config.d_kv, config.d_ff
    out: dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]] = {
        "shared.weight": (("token_embedder", "embedding"), (config.vocab_size, d), False),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": (
            ("relpos_bias", "rel_embedding"),
            (config.relative_attention_num_buckets, config.num_heads),
            True,
        ),
        "encoder.final_layer_norm.weight": (("encoder_norm", "scale"), (d,), False),
    }
    for i in range(config.num_layers):
        p = f"encoder.block.{i}.layer."
        lay = f"layers_{i}"
        for hf, t5x in (("q", "query"), ("k", "key"), ("v", "value")):
            out[f"{p}0.SelfAttention.{hf}.weight"] = (
                (lay, "attention", t5x, "kernel"),
                (inner, d),
                True,
            )
        out[f"{p}0.SelfAttention.o.weight"] = (
            (lay, "attention", "out", "kernel"),
            (d, inner),
            True,
        )
        out[f"{p}0.layer_norm.weight"] = ((lay, "pre_attention_layer_norm", "scale"), (d,), False)
        out[f"{p}1.DenseReluDense.wi_0.weight"] = ((lay, "mlp", "wi_0", "kernel"), (f, d), True)
        out[f"{p}1.DenseReluDense.wi_1.weight"] = ((lay, "mlp", "wi_1", "kernel"), (f, d), True)
        out[f"{p}1.DenseReluDense.wo.weight"] = ((lay, "mlp", "wo", "kernel"), (d, f), True)
        out[f"{p}1.layer_norm.weight"] = ((lay, "pre_mlp_layer_norm", "scale"), (d,), False)
    return out


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _report(where: str, missing: list[str], unexpected: list[str], wrong: list[str]) -> None:
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensor(s): {missing}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} tensor(s): {unexpected}")
    if wrong:
        parts.append(f"wrong shape: {wrong}")
    raise CheckpointError(
        f"{where} does not match the T5 v1.1 encoder: " + "; ".join(parts),
        missing=missing,
        unexpected=unexpected,
    )


def load_hf_checkpoint(path: str | os.PathLike, *, dtype: Any = np.float32):
    """Load a Hugging Face T5 v1.1 encoder checkpoint (safetensors).

    Args:
      path: a directory holding ``model.safetensors`` or ``model.safetensors.index.json``
        (and normally ``config.json``), or the path of one of those files. Both
        ``T5EncoderModel`` and ``T5ForConditionalGeneration`` checkpoints are accepted;
        decoder and LM-head tensors are skipped.
      dtype: dtype of the returned arrays (float32 by default).

    Returns:
      ``(config, params)``: the encoder ConfigDict and the params tree of
      :class:`T5Encoder` as numpy arrays.

    Raises:
      FileNotFoundError: no such file or directory, or no safetensors in it.
      CheckpointError: missing, unexpected or wrongly shaped tensors (named).
      ValueError: a file that is not safetensors, or a model that is not T5 v1.1.
    """
    source, folder = _open_hf(pathlib.Path(path))
    try:
        return _load_hf(source, folder, path, dtype)
    finally:
        source.close()


def _load_hf(source: _TensorSource, folder: pathlib.Path, path, dtype):
    config = _hf_config(source, folder)
    layout = _hf_layout(config)
    names = set(source.names())
    if "shared.weight" not in names and "encoder.embed_tokens.weight" in names:
        emb_source = "encoder.embed_tokens.weight"
    else:
        emb_source = "shared.weight"
    missing, wrong = [], []
    params: dict = {}
    for name, (target, shape, transpose) in layout.items():
        src = emb_source if name == "shared.weight" else name
        if src not in names:
            missing.append(name)
            continue
        if source.shape(src) != shape:
            wrong.append(f"{src}: {source.shape(src)} (expected {shape})")
            continue
        _set(params, target, (src, transpose))
    unexpected = sorted(n for n in names if n not in layout and not _HF_IGNORED.match(n))
    _report(f"HF checkpoint {str(path)!r}", sorted(missing), unexpected, wrong)

    def read(leaf):
        src, transpose = leaf
        x = source.read(src)
        x = x.T if transpose else x
        return np.array(x, dtype=dtype)

    params = jax.tree_util.tree_map(read, params, is_leaf=lambda x: isinstance(x, tuple))
    return config, params


# ---------------------------------------------------------------------------- t5x import


def _t5x_layout(config) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """t5x name (relative to the parameter root) → (params path, shape)."""
    d, inner, f = config.d_model, config.num_heads * config.d_kv, config.d_ff
    out = {
        "token_embedder/embedding": (("token_embedder", "embedding"), (config.vocab_size, d)),
        "encoder/relpos_bias/rel_embedding": (
            ("relpos_bias", "rel_embedding"),
            (config.num_heads, config.relative_attention_num_buckets),
        ),
        "encoder/encoder_norm/scale": (("encoder_norm", "scale"), (d,)),
    }
    for i in range(config.num_layers):
        lay = f"layers_{i}"
        for proj in ("query", "key", "value"):
            out[f"encoder/{lay}/attention/{proj}/kernel"] = (
                (lay, "attention", proj, "kernel"),
                (d, inner),
            )
        out[f"encoder/{lay}/attention/out/kernel"] = (
            (lay, "attention", "out", "kernel"),
            (inner, d),
        )
        for norm in ("pre_attention_layer_norm", "pre_mlp_layer_norm"):
            out[f"encoder/{lay}/{norm}/scale"] = ((lay, norm, "scale"), (d,))
        for w, shape in (("wi_0", (d, f)), ("wi_1", (d, f)), ("wo", (f, d))):
            out[f"encoder/{lay}/mlp/{w}/kernel"] = ((lay, "mlp", w, "kernel"), shape)
    return out


def _flatten(tree, prefix=()) -> dict[tuple[str, ...], Any]:
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, prefix + (str(k),)))
    else:
        out[prefix] = tree
    return out


def _fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Equal, or a split of the heads axis ([D, H, K] for [D, H*K], [H, K, D] for [H*K, D])."""
    if tuple(shape) == expected:
        return True
    if len(expected) != 2 or math.prod(shape) != math.prod(expected) or len(shape) != 3:
        return False
    return shape[0] == expected[0] or shape[-1] == expected[-1]


def load_t5x_checkpoint(path: str | os.PathLike, config, *, dtype: Any = np.float32) -> dict:
    """Load the encoder of a t5x checkpoint saved with orbax.

    Args:
      path: the orbax checkpoint directory (e.g. ``.../checkpoint_1000000``).
      config: the encoder ConfigDict the checkpoint was trained with (t5x checkpoints do
        not record it), e.g. ``get_config("xxl")``.
      dtype: dtype of the returned arrays (float32 by default).

    Returns:
      The params tree of :class:`T5Encoder` as numpy arrays.

    Raises:
      FileNotFoundError: no such directory.
      ValueError: not an orbax PyTree checkpoint.
      CheckpointError: missing, unexpected or wrongly shaped encoder tensors (named).
    """
    import orbax.checkpoint as ocp

    validate_config(config)
    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"t5x checkpoint directory {str(path)!r} does not exist")
    ckptr = ocp.PyTreeCheckpointer()
    try:
        meta = ckptr.metadata(path)
    except Exception as e:  # orbax raises several types for a non-checkpoint directory
        subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())[:5]
        hint = (
            f"; it has subdirectories {subdirs}: pass the directory of one checkpoint step "
            "(e.g. .../checkpoint_1000000 or .../1000/default)"
            if subdirs
            else ""
        )
        raise ValueError(
            f"{str(path)!r} is not an orbax PyTree checkpoint ({type(e).__name__}: {e}){hint}"
        ) from None
    meta = getattr(meta, "item_metadata", meta)
    tree = getattr(meta, "tree", meta)
    if not isinstance(tree, dict):
        raise ValueError(f"{str(path)!r}: expected a dict-shaped orbax checkpoint")
    root: tuple[str, ...] = ()
    for key in ("target", "params"):
        if isinstance(tree.get(key), dict):
            root = (key,)
            break
    flat = _flatten(tree)
    rel = {"/".join(k[len(root) :]): k for k in flat if k[: len(root)] == root}
    layout = _t5x_layout(config)
    missing, wrong = [], []
    for name, (_, shape) in layout.items():
        if name not in rel:
            missing.append(name)
            continue
        got = tuple(getattr(flat[rel[name]], "shape", ()))
        if not _fits(got, shape):
            wrong.append(f"{name}: {got} (expected {shape})")
    unexpected = sorted(
        n for n in rel if n not in layout and not n.startswith("decoder/") and n != "decoder"
    )
    _report(f"t5x checkpoint {str(path)!r}", missing, unexpected, wrong)

    item: dict = {}
    restore_args: dict = {}
    for name in layout:
        key = rel[name]
        _set(item, key, np.zeros((), np.float32))
        _set(restore_args, key, ocp.RestoreArgs(restore_type=np.ndarray))
    try:
        restored = ckptr.restore(
            path,
            args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True),
        )
    except Exception as e:
        raise ValueError(
            f"t5x checkpoint {str(path)!r} could not be restored ({type(e).__name__}: {e})"
        ) from None
    flat_restored = _flatten(restored)
    params: dict = {}
    for name, (target, shape) in layout.items():
        x = np.asarray(flat_restored[rel[name]])
        _set(params, target, np.array(x.reshape(shape), dtype=dtype))
    return params
