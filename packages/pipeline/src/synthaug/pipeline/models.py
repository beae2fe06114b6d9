"""Diffusion models of the cascade: presets sized to the text encoder, checkpoints, model_fns."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from synthaug.pipeline.errors import ConfigError
from synthaug.pipeline.io import require_dir, write_json

__all__ = [
    "DEMO_PRESETS",
    "MODEL_FILE",
    "checkpoint_steps",
    "diffusion_config",
    "load_stage_model",
    "preset_names",
    "write_model_info",
]

MODEL_FILE = "model.json"

# Models sized for the CPU demo on the digits: a diffusion-core preset plus changes. Both
# predict v (the velocity alpha*eps - sigma*x0) instead of eps: measured with the same training
# and sampler code, a 16-channel base trained 1,000 steps of batch 32 draws digits that a
# logistic regression fitted on real digits recognises 93-97% of the time with v and 17-19%
# with eps (eps needs about 3,000 steps for 74%); the SR model after 300 steps keeps 56% of real
# low-resolution test digits recognisable with v and 12% with eps.
DEMO_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo_base": ("tiny_base", {"model.model_channels": 16, "diffusion.prediction_type": "v"}),
    "demo_sr": ("tiny_sr", {"diffusion.prediction_type": "v"}),
}


def preset_names() -> list[str]:
    """Every preset name a stage config may use: diffusion-core's and :data:`DEMO_PRESETS`."""
    from synthaug import diffusion_core as dc

    return sorted(set(dc.PRESETS) | set(DEMO_PRESETS))


def diffusion_config(preset: str, *, text_dim: int, overrides: dict[str, Any] | None = None):
    """The diffusion-core preset ``preset`` with its text input width set to ``text_dim``.

    Args:
      preset: a ``synthaug.diffusion_core`` preset name, or one of :data:`DEMO_PRESETS`.
      text_dim: the text encoder's embedding width.
      overrides: ``{"section.key": value}`` changes (e.g. ``{"optimizer.learning_rate": 1e-3}``).

    Raises:
      ConfigError: an unknown preset or override key.
    """
    from synthaug import diffusion_core as dc

    base, changes = DEMO_PRESETS.get(preset, (preset, {}))
    try:
        cfg = dc.get_preset(base)
    except KeyError:
        raise ConfigError(
            f"unknown diffusion preset {preset!r}; expected one of {', '.join(preset_names())}"
        ) from None
    with cfg.unlocked():
        cfg.model.text_dim = int(text_dim)
        for key, value in changes.items():
            section, _, name = key.partition(".")
            cfg[section][name] = value
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in cfg or name not in cfg[section]:
            raise ConfigError(f"diffusion preset {preset!r} has no key {key!r}")
        cfg[section][name] = value
    return cfg


def write_model_info(workdir: str | os.PathLike, preset: str, text_dim: int) -> None:
    """Record how the checkpoint in ``workdir/checkpoints`` was built (for the sampler)."""
    write_json(pathlib.Path(workdir) / MODEL_FILE, {"preset": preset, "text_dim": int(text_dim)})


def load_stage_model(
    checkpoint: str | os.PathLike, preset: str, *, text_dim: int, step: int | None = None
):
    """The model and EMA parameters of one cascade stage.

    Args:
      checkpoint: a ``finetune`` workdir (holding ``checkpoints/`` and ``model.json``) or a
        checkpoint directory itself.
      preset: the preset named by the config (must agree with ``model.json`` if present).
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
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info["preset"] != preset or int(info["text_dim"]) != int(text_dim):
            raise ConfigError(
                f"checkpoint {str(checkpoint)!r} holds a {info['preset']!r} model with text width "
                f"{info['text_dim']}, the config asks for {preset!r} with {text_dim}"
            )
    cfg = diffusion_config(preset, text_dim=text_dim)
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
