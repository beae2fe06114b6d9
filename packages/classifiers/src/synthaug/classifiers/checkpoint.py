"""Checkpoints of a training state (and a small JSON record) with orbax.

Saves are synchronous and atomic: orbax writes into a temporary directory and renames it
when complete, so a run killed during a save leaves the previous checkpoint intact and the
partial one is ignored on restore.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager``.

    Args:
      directory: where the step directories live (created if missing).
      max_to_keep: how many most recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
            item_names=("state", "meta"),
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        self._mgr.reload()
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending."""
        self._mgr.reload()
        return sorted(self._mgr.all_steps())

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Save ``state`` (a pytree) and ``meta`` (JSON-serialisable) at ``step``.

        Args:
          step: the training step (directory name).
          state: pytree of arrays.
          meta: small JSON record (e.g. the metric history).
        """
        self._mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})
            ),
            force=True,
        )
        self._mgr.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore the state at ``step`` (default: the latest) into ``template``'s structure.

        Args:
          template: a pytree with the target structure, shapes, dtypes and shardings
            (arrays or ``jax.ShapeDtypeStruct``).
          step: which step (default: latest).

        Returns:
          ``(state, meta)``.
        """
        if step is None:
            step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        out = self._mgr.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.meta or {})

    def close(self) -> None:
        self._mgr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
