"""Saving and loading a trained classifier: its recipe and its training state.

A classifier directory holds ``classifier.json`` (the recipe config the model was trained
with) and ``checkpoints/`` (the :class:`TrainState` through ``synthaug.io.checkpoint``,
the same directory :func:`fit` writes and resumes from). The recipe is written atomically
after the state is saved, so a directory with a ``classifier.json`` always holds a state.
"""

from __future__ import annotations

import json
import os
import pathlib

import jax
import ml_collections

from synthaug.classifiers.recipes import base_config, validate_config
from synthaug.classifiers.state import TrainState, create_train_state, model_from_config
from synthaug.io import write_text
from synthaug.io.checkpoint import Checkpointer

__all__ = ["CHECKPOINTS", "CONFIG_FILE", "load_classifier", "save_classifier"]

CONFIG_FILE = "classifier.json"
CHECKPOINTS = "checkpoints"


def save_classifier(
    directory: str | os.PathLike, config: ml_collections.ConfigDict, state: TrainState
) -> pathlib.Path:
    """Save a trained classifier: ``directory/checkpoints`` and ``directory/classifier.json``.

    The state is saved at its step unless that step is already there (as after
    :func:`fit` with ``checkpoint_dir=directory/"checkpoints"``). Every process of a
    multi-process run calls this (the save is collective).

    Args:
      directory: the classifier directory (created if missing).
      config: the recipe config the model was trained with.
      state: the trained state.

    Returns:
      the directory.
    """
    directory = pathlib.Path(directory)
    step = int(jax.device_get(state.step))
    with Checkpointer(directory / CHECKPOINTS, async_save=False) as ckpt:
        if step not in ckpt.all_steps():
            ckpt.save(step, state, metadata={"history": []}, force=True)
    if jax.process_index() == 0:
        write_text(directory / CONFIG_FILE, config.to_json(indent=2) + "\n")
    return directory


def read_config(directory: str | os.PathLike) -> ml_collections.ConfigDict:
    """The recipe config of a classifier directory (keys added since it was written take
    their defaults).

    Raises:
      FileNotFoundError: no ``classifier.json``.
      ValueError: the file is not a recipe config.
    """
    path = pathlib.Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"classifier directory {str(directory)!r} has no {CONFIG_FILE}")
    try:
        saved = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    config = base_config()
    unknown = sorted(set(saved) - set(config.keys())) if isinstance(saved, dict) else None
    if unknown is None or unknown:
        raise ValueError(f"{path} is not a classifier recipe (unknown keys {unknown})")
    config.update(saved)
    validate_config(config)
    return config


def load_classifier(
    directory: str | os.PathLike, *, step: int | None = None
) -> tuple[ml_collections.ConfigDict, TrainState]:
    """``(config, state)`` of a classifier saved by :func:`save_classifier` (or trained by
    :func:`fit` into ``directory/checkpoints`` next to its ``classifier.json``).

    Args:
      directory: the classifier directory.
      step: a checkpoint step (default: the newest complete one).

    Returns:
      the recipe config and the restored state (on the default device).

    Raises:
      FileNotFoundError: no ``classifier.json``, or no complete checkpoint
        (``synthaug.io.checkpoint.CheckpointError``, a ``FileNotFoundError``).
    """
    config = read_config(directory)
    model = model_from_config(config)
    # The target's shapes and dtypes without running (or compiling) an initialisation.
    target = jax.eval_shape(
        lambda: create_train_state(model, config, jax.random.key(0), steps_per_epoch=1)
    )
    with Checkpointer(pathlib.Path(directory) / CHECKPOINTS, async_save=False) as ckpt:
        state = ckpt.restore(step, target=target)
    return config, state
