"""Reading parameters out of a training checkpoint (written by :func:`train`).

Checkpoints are written by :class:`synthaug.io.checkpoint.Checkpointer` (orbax), one
directory per step holding the whole :class:`~synthaug.diffusion_core.train.TrainState`.
"""

from __future__ import annotations

import os
from typing import Any

from synthaug.io.checkpoint import Checkpointer, CheckpointError

__all__ = ["CheckpointError", "load_params"]


def load_params(
    directory: str | os.PathLike, *, step: int | None = None, which: str = "ema_params"
) -> Any:
    """Read a parameter tree from a training checkpoint directory (no target needed).

    Args:
      directory: the checkpoint directory.
      step: which step (default: the newest complete one; a damaged newest step is passed
        over with a warning).
      which: ``"ema_params"`` (default) or ``"params"``.

    Returns:
      The nested dict of arrays.

    Raises:
      FileNotFoundError: no directory, or no complete checkpoint in it
        (:class:`~synthaug.io.checkpoint.CheckpointError`).
      KeyError: ``which`` is not in the checkpoint.
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    with Checkpointer(directory) as ckpt:
        tree = ckpt.restore(step)
        step = ckpt.restored_step
    if not isinstance(tree, dict) or which not in tree:
        have = list(tree) if isinstance(tree, dict) else type(tree).__name__
        raise KeyError(f"checkpoint {directory} step {step} has no {which!r}; has {have}")
    return tree[which]
