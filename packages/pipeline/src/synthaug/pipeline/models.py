"""Diffusion models of the cascade: the finetune config's model, its record, checkpoints."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import ml_collections

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir, write_json

__all__ = [
    "MODEL_FILE",
    "checkpoint_steps",
    "PACKAGE_SECTIONS",
    "check_text_dim",
    "diffusion_config",
    "load_stage_model",
    "read_model_info",
    "write_model_info",
]

MODEL_FILE = "model.json"

#: The sections of a finetune config that are diffusion-core's own preset config.
PACKAGE_SECTIONS = ("model", "diffusion", "optimizer", "train")


def diffusion_config(cfg) -> ml_collections.ConfigDict:
    """The ``synthaug.diffusion_core`` config inside a ``finetune`` config, as it is.

    Args:
      cfg: a validated finetune config (its ``model``, ``diffusion``, ``optimizer`` and
        ``train`` sections are the package's preset sections, see
        :func:`synthaug.pipeline.schemas.finetune_config`).
    """
    out = ml_collections.ConfigDict({k: cfg[k].to_dict() for k in cfg if k in PACKAGE_SECTIONS})
    out.lock()
    return out


def check_text_dim(dcfg, text_dim: int, where: str) -> None:
    """The model's text input width must be the text encoder's embedding width."""
    want = dcfg.model.get("text_dim", None)
    if want is not None and int(want) != int(text_dim):
        raise ConfigError(
            f"{where}: model.text_dim is {int(want)} but the text encoder's embeddings are "
            f"{int(text_dim)} wide (set model.text_dim={int(text_dim)} or pick the matching "
            "text.encoder)"
        )


def write_model_info(workdir: str | os.PathLike, preset: str, dcfg) -> None:
    """Record how the checkpoint in ``workdir/checkpoints`` was built (read by ``sample``)."""
    info = {
        "preset": preset,
        # 0: a model without text input (ADM's class labels), as import-weights records it
        "text_dim": int(dcfg.model.get("text_dim", None) or 0),
        "config": {k: dcfg[k].to_dict() for k in ("model", "diffusion")},
    }
    write_json(pathlib.Path(workdir) / MODEL_FILE, info)


def read_model_info(path: str | os.PathLike) -> dict[str, Any]:
    """A ``model.json``, or a ConfigError naming the file."""
    from synthaug.pipeline.io import read_json

    info = read_json(path, "model record")
    if not isinstance(info, dict) or "preset" not in info:
        raise ConfigError(f"model record {str(path)!r} has no 'preset'; not a finetune model.json")
    return info


def load_stage_model(
    checkpoint: str | os.PathLike, preset: str, *, text_dim: int, step: int | None = None
):
    """The model and EMA parameters of one cascade stage.

    Args:
      checkpoint: a ``finetune`` workdir (holding ``checkpoints/`` and ``model.json``) or a
        checkpoint directory itself.
      preset: the preset named by the config (must agree with ``model.json`` if present;
        a checkpoint without one is taken to be this preset).
      text_dim: the text encoder's width.
      step: which kept step (default: the latest).

    Returns:
      ``(config, model, params)``.

    Raises:
      MissingPathError: the checkpoint directory does not exist.
      ConfigError: the checkpoint was trained with another preset or text width.
    """
    from synthaug import diffusion_core as dc

    path = require_dir(checkpoint, "diffusion checkpoint directory")
    info_path = path / MODEL_FILE
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    elif path.parent.joinpath(MODEL_FILE).is_file():
        info_path = path.parent / MODEL_FILE
    try:
        cfg = dc.get_preset(preset)
    except KeyError:
        raise ConfigError(
            f"unknown diffusion preset {preset!r}; expected one of {', '.join(sorted(dc.PRESETS))}"
        ) from None
    if info_path.is_file():
        info = read_model_info(info_path)
        # An imported class-conditional model (ADM) records text width 0: no text input.
        info_dim = int(info.get("text_dim") or 0)
        if info["preset"] != preset or (info_dim and info_dim != int(text_dim)):
            raise ConfigError(
                f"checkpoint {str(checkpoint)!r} holds a {info['preset']!r} model with text width "
                f"{info['text_dim']}, the config asks for {preset!r} with {text_dim}"
            )
        try:
            for section, values in info.get("config", {}).items():
                for key, value in values.items():
                    cfg[section][key] = tuple(value) if isinstance(value, list) else value
        except (KeyError, AttributeError, TypeError) as e:
            raise ConfigError(
                f"model record {str(info_path)!r} does not fit preset {preset!r}: {e}"
            ) from None
    check_text_dim(cfg, text_dim, f"checkpoint {str(checkpoint)!r}")
    model = dc.make_model(cfg)
    try:
        params = dc.load_params(path, step=step)
    except FileNotFoundError as e:
        raise type(e)(f"no diffusion checkpoint in {str(checkpoint)!r}: {e}") from None
    return cfg, model, params


def checkpoint_steps(checkpoint: str | os.PathLike) -> list[int]:
    """The steps kept in a ``finetune`` workdir (or a checkpoint directory), ascending."""
    path = require_dir(checkpoint, "diffusion checkpoint directory")
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
