"""``synthaug import-weights``: public pretrained generators as synthaug checkpoints.

    synthaug import-weights --from adm 64x64_diffusion.pt --out ckpt/adm64 [--preset adm_64]
    synthaug import-weights --from deepfloyd-if IF-I-XL-v1.0/unet --out ckpt/if1 --preset if_i_xl

Reads guided-diffusion ``.pt`` files with synthaug.io's restricted torch reader (no pickled
code runs) and DeepFloyd IF's diffusers-format ``diffusion_pytorch_model*.safetensors`` (also
sharded, with their ``.index.json``) or ``.bin`` files, converts them strictly
(:mod:`synthaug.diffusion_core.convert`: every tensor used, every parameter filled, shapes
checked) and writes ``OUT/checkpoints/`` (an orbax checkpoint holding ``ema_params``) and
``OUT/model.json``, which ``sample`` (``<stage>.checkpoint``) and ``finetune``
(``init_checkpoint``) read. Nothing is written unless the whole conversion succeeds.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from synthaug.pipeline.errors import ConfigError, MissingPathError

__all__ = [
    "DEFAULT_PRESETS",
    "SOURCES",
    "empty_prompt_embedding",
    "import_weights",
    "read_weights",
    "resolve_checkpoint_dir",
]

SOURCES = ("adm", "deepfloyd-if")
DEFAULT_PRESETS = {"adm": "adm_64", "deepfloyd-if": "if_i_xl"}
# guided-diffusion's attention layout of each ADM preset (``use_new_attention_order``).
ADM_ATTENTION_ORDER = {
    "adm_64": "new",
    "adm_sr_256": "legacy",
    "tiny_adm": "new",
    "tiny_adm_sr": "legacy",
}
_DIFFUSERS_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
)


def _read_file(path: pathlib.Path) -> dict[str, np.ndarray]:
    from synthaug.io import read_safetensors, read_state_dict

    if path.name.endswith(".index.json"):
        try:
            index = json.loads(path.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not a sharded-weights index (no weight_map): {e}") from None
        out: dict[str, np.ndarray] = {}
        for shard in sorted(set(index.values())):
            out.update(_read_file(path.parent / shard))
        return out
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return read_state_dict(path)


def read_weights(src: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` from a weights file or a diffusers model directory.

    Args:
      src: a ``.pt`` / ``.pth`` / ``.bin`` (torch, read without running code) or
        ``.safetensors`` file, a sharded ``*.index.json``, or a directory holding one of
        diffusers' ``diffusion_pytorch_model`` files (directly or under ``unet/``).

    Raises:
      MissingPathError: no such file, or a directory without model weights.
      WeightsFileError: a corrupt or unsafe file (from synthaug.io's readers).
    """
    path = pathlib.Path(src)
    if not path.exists():
        raise MissingPathError(f"pretrained weights {str(src)!r} do not exist")
    if path.is_dir():
        for d in (path, path / "unet"):
            for name in _DIFFUSERS_NAMES:
                if (d / name).is_file():
                    return _read_file(d / name)
        raise MissingPathError(
            f"pretrained weights directory {str(src)!r} holds none of {', '.join(_DIFFUSERS_NAMES)}"
        )
    return _read_file(path)


def import_weights(
    source: str, src: str | os.PathLike, out: str | os.PathLike, *, preset: str | None = None
) -> dict[str, Any]:
    """Convert pretrained ADM or DeepFloyd IF weights into ``out`` (see the module docstring).

    Args:
      source: ``"adm"`` or ``"deepfloyd-if"``.
      src: the weights (see :func:`read_weights`).
      out: the output directory (replaced only once everything is converted).
      preset: the diffusion-core preset the weights belong to (default ``adm_64`` /
        ``if_i_xl``).

    Returns:
      The ``model.json`` record: preset, text width, source, parameter count.

    Raises:
      ConfigError: an unknown source or preset, or weights that do not match the preset.
    """
    import jax

    from synthaug import diffusion_core as dc
    from synthaug.diffusion_core.convert import convert_adm_state_dict, convert_if_state_dict
    from synthaug.io import atomic_dir
    from synthaug.io.checkpoint import Checkpointer

    if source not in SOURCES:
        raise ConfigError(f"--from must be one of {', '.join(SOURCES)}, got {source!r}")
    preset = preset or DEFAULT_PRESETS[source]
    try:
        cfg = dc.get_preset(preset)
    except KeyError:
        raise ConfigError(
            f"unknown preset {preset!r}; expected one of {', '.join(sorted(dc.PRESETS))}"
        ) from None
    state_dict = read_weights(src)
    try:
        if source == "adm":
            if preset not in ADM_ATTENTION_ORDER:
                raise ValueError(
                    f"preset {preset!r} is not an ADM preset; expected one of "
                    f"{', '.join(sorted(ADM_ATTENTION_ORDER))}"
                )
            params = convert_adm_state_dict(
                state_dict, cfg, attention_order=ADM_ATTENTION_ORDER[preset]
            )
        else:
            params = convert_if_state_dict(state_dict, cfg)
    except ValueError as e:
        raise ConfigError(f"{src}: {e}") from None
    text_dim = cfg.model.get("text_dim", None)
    info = {
        "preset": preset,
        "text_dim": int(text_dim) if text_dim is not None else 0,
        "source": source,
        "weights": str(src),
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
    }
    out = pathlib.Path(out)
    with atomic_dir(out) as tmp:
        with Checkpointer(tmp / "checkpoints", async_save=False) as ckpt:
            ckpt.save(0, {"ema_params": params}, force=True)
        (tmp / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def resolve_checkpoint_dir(path: str | os.PathLike) -> pathlib.Path:
    """The orbax directory of a ``finetune`` workdir / ``import-weights`` output, or ``path``."""
    p = pathlib.Path(path)
    return p / "checkpoints" if (p / "checkpoints").is_dir() else p


def empty_prompt_embedding(text_cfg, class_names, *, workdir) -> tuple[np.ndarray, np.ndarray]:
    """The text encoder's embedding of the empty prompt ``""``: ``([1, L, D], [1, L])``.

    DeepFloyd IF was trained with it as the unconditional input of classifier-free guidance.
    """
    from synthaug import text_encoder as te
    from synthaug.pipeline.text import load_text_encoder

    enc = load_text_encoder(text_cfg, class_names, workdir=workdir)
    ids, mask = enc.tokenizer([""])
    emb, mask = te.encode_batched(enc.encode_fn, ids, mask)
    return np.asarray(emb, np.float32), np.asarray(mask, bool)
