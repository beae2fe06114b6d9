"""Checkpoints with orbax: save every N steps, keep K, resume from the latest."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from synthaug.diffusion_core.train import TrainState

__all__ = ["Checkpointer", "load_params"]


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """A small wrapper around ``orbax.checkpoint.CheckpointManager`` for :class:`TrainState`.

    Saves are asynchronous and atomic (orbax writes to a temporary directory and renames it
    when complete), so a process killed during a save leaves the previous checkpoints valid.

    Args:
      directory: where the step directories live (created if missing).
      save_every: :meth:`save` only writes on multiples of this (unless ``force``).
      keep: how many of the most recent checkpoints to keep.
      async_save: write in a background thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        save_every: int = 1,
        keep: int = 3,
        async_save: bool = True,
    ):
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=save_every,
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=async_save,
        )
        self._mgr = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: TrainState, *, force: bool = False) -> bool:
        """Save ``state`` as ``step`` (if ``step`` is on the cadence or ``force``)."""
        return self._mgr.save(int(step), args=ocp.args.StandardSave(state), force=force)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of all complete checkpoints, ascending."""
        return sorted(self._mgr.all_steps())

    def restore(self, target: TrainState, *, step: int | None = None) -> TrainState:
        """Restore a checkpoint into the structure (and shardings) of ``target``.

        Args:
          target: a state with the right structure (e.g. a freshly created one).
          step: which step (default: the latest).

        Raises:
          FileNotFoundError: no checkpoint (or not that step) in the directory.
        """
        self._mgr.wait_until_finished()
        if step is None:
            step = self.latest_step()
        if step is None or step not in self._mgr.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory} (available: {self.all_steps()})"
            )
        return self._mgr.restore(int(step), args=ocp.args.StandardRestore(_abstract(target)))

    def wait_until_finished(self) -> None:
        """Block until pending asynchronous saves are written."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release resources."""
        self._mgr.wait_until_finished()
        self._mgr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_params(
    directory: str | os.PathLike, *, step: int | None = None, which: str = "ema_params"
) -> Any:
    """Read a parameter tree from a :class:`Checkpointer` directory (no target needed).

    Args:
      directory: the checkpoint directory.
      step: which step (default: the latest).
      which: ``"ema_params"`` (default) or ``"params"``.

    Returns:
      The nested dict of NumPy/JAX arrays.

    Raises:
      FileNotFoundError: no checkpoint there.
      KeyError: ``which`` is not in the checkpoint.
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    with ocp.CheckpointManager(directory) as mgr:
        step = mgr.latest_step() if step is None else step
        if step is None or step not in mgr.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {directory}")
        tree = mgr.restore(int(step), args=ocp.args.StandardRestore())
    if which not in tree:
        raise KeyError(f"checkpoint {directory} step {step} has no {which!r}; has {list(tree)}")
    return tree[which]
