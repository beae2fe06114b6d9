"""One checkpoint wrapper for any pytree: orbax's ``CheckpointManager`` with a fallback.

Each step is a directory ``<directory>/<step>/`` holding the pytree (item ``state``, orbax's
standard format: OCDBT/Zarr through TensorStore) and a small JSON record (item ``metadata``).
orbax writes a step into a temporary directory and renames it when complete, so a process
killed during a save leaves the earlier steps intact and the partial one is never listed.

What orbax cannot see is a step damaged *after* it was completed (a file truncated or
emptied by a full disk, a copy cut short, a sync gone wrong): restoring it raises deep in
TensorStore, or worse. Once a save is complete this wrapper records the size of every file of
the step (``synthaug_files.json``, written by process 0); :meth:`Checkpointer.restore`
checks them first and, without an explicit step, falls back to the newest complete step with
a warning, or fails with one line when no step is complete.

Multi-process: every process constructs the :class:`Checkpointer` and calls ``save`` and
``restore`` with the same arguments (orbax writes each process's shards and synchronises
them); restoring into a ``target`` of sharded arrays (or ``jax.ShapeDtypeStruct``s with a
``sharding``) places each shard directly on its devices.

Requires the ``checkpoint`` extra (``pip install synthaug-io[checkpoint]``).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from synthaug.io.atomic import write_json

__all__ = ["CheckpointError", "Checkpointer", "abstract_tree"]

log = logging.getLogger(__name__)

_STATE, _META = "state", "metadata"
_FILES = "synthaug_files.json"


class CheckpointError(FileNotFoundError):
    """No complete checkpoint to restore (missing, truncated or unreadable); one line."""


def abstract_tree(tree: Any) -> Any:
    """``tree``'s leaves as ``jax.ShapeDtypeStruct`` (shape, dtype and sharding kept)."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _local_copy(tree: Any) -> Any:
    """Replicated global arrays as this process's own numpy copies."""
    import numpy as np

    return jax.tree.map(
        lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree
    )


def _unplaced(abstract: Any) -> bool:
    """True if no leaf of an abstract tree carries a sharding."""
    return all(getattr(x, "sharding", None) is None for x in jax.tree.leaves(abstract))


def _replicated(abstract: Any) -> Any:
    """An abstract tree placed whole on every device of every process."""
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    replicated = NamedSharding(Mesh(np.asarray(jax.devices()), ("all",)), P())
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=replicated), abstract
    )


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first[:300]}"


class Checkpointer:
    """Save every ``save_every`` steps, keep the ``keep`` newest, restore (sharded) with fallback.

    Args:
      directory: where the step directories live (created if missing). A local path or any
        path orbax accepts (e.g. ``gs://...``; the file-size record is kept for local paths
        only, elsewhere a damaged step is detected when its restore fails).
      keep: how many of the newest steps to keep (older ones are deleted after a save).
      save_every: :meth:`save` writes only steps that are multiples of this (unless
        ``force``).
      async_save: write in a background thread (the arrays are copied to host memory before
        :meth:`save` returns, so the caller may donate or overwrite them).

    Raises:
      ValueError: ``keep`` or ``save_every`` below 1.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 3,
        save_every: int = 1,
        async_save: bool = True,
    ):
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if int(save_every) < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        directory = os.fspath(directory)
        self._local = "://" not in directory
        self.directory = os.path.abspath(directory) if self._local else directory
        self.keep = int(keep)
        self.save_every = int(save_every)
        self.restored_step: int | None = None
        self._pending: list[int] = []  # saved steps whose file record is not yet written
        self._damaged: set[int] = set()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep,
            create=True,
            enable_async_checkpointing=bool(async_save),
        )
        self._mgr = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE, _META)
        )

    # -- listing -----------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        """The steps of every finished save in the directory, ascending (damaged or not)."""
        if not self._pending:
            self._mgr.reload()  # see steps written by another run since construction
        return sorted(int(s) for s in self._mgr.all_steps())

    def latest_step(self) -> int | None:
        """The newest step whose files are complete, or None."""
        for step in reversed(self.all_steps()):
            if self.check(step) is None:
                return step
        return None

    def check(self, step: int) -> str | None:
        """Why step ``step`` is damaged (a missing, truncated or empty file), or None.

        Steps saved without a file record (another writer, or a process killed between the
        end of the save and the record) are taken as complete; a damage then shows when
        :meth:`restore` reads them.
        """
        if not self._local:
            return None
        step_dir = os.path.join(self.directory, str(int(step)))
        if not os.path.isdir(step_dir):
            return f"step directory {step_dir} does not exist"
        record = os.path.join(step_dir, _FILES)
        if not os.path.exists(record):
            if not any(files for _, _, files in os.walk(step_dir)):
                return f"step directory {step_dir} is empty"
            return None
        try:
            with open(record) as f:
                expected = json.load(f)["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"its file record {record} is unreadable ({_one_line(e)})"
        for rel, size in expected.items():
            path = os.path.join(step_dir, rel)
            try:
                actual = os.path.getsize(path)
            except OSError:
                return f"file {path} is missing"
            if actual != size:
                return f"file {path} has {actual} bytes, expected {size}"
        return None

    # -- saving ------------------------------------------------------------------------

    def save(
        self, step: int, pytree: Any, *, metadata: dict | None = None, force: bool = False
    ) -> bool:
        """Save ``pytree`` (and a JSON-serialisable ``metadata`` dict) as ``step``.

        Args:
          step: the step number (the directory name).
          pytree: any pytree of arrays (jax, NumPy) and scalars; sharded arrays are written
            by the processes that hold them.
          metadata: a small JSON record (e.g. a metric history); read back with
            :meth:`metadata`.
          force: save even if ``step`` is not a multiple of ``save_every``.

        Returns:
          Whether a save was started.
        """
        step = int(step)
        if not force and step % self.save_every:
            return False
        self._finish_pending()
        if step in self._damaged and step in self._mgr.all_steps():
            # A damaged step passed over by a fallback restore is replaced by the new one.
            self._mgr.delete(step)
            self._damaged.discard(step)
        saved = self._mgr.save(
            step,
            args=ocp.args.Composite(
                **{
                    _STATE: ocp.args.StandardSave(pytree),
                    _META: ocp.args.JsonSave(dict(metadata or {})),
                }
            ),
            force=True,
        )
        if saved:
            self._pending.append(step)
        return bool(saved)

    def _finish_pending(self) -> None:
        """Wait for pending saves, then record the file sizes of the finished steps."""
        self._mgr.wait_until_finished()
        pending, self._pending = self._pending, []
        if not self._local or jax.process_index() != 0:
            return
        existing = set(self._mgr.all_steps())
        for step in pending:
            if step in existing:
                self._write_record(step)

    def _write_record(self, step: int) -> None:
        step_dir = os.path.join(self.directory, str(step))
        files = {}
        for root, _, names in os.walk(step_dir):
            for name in names:
                if name == _FILES or name.startswith(f".{_FILES}."):
                    continue
                path = os.path.join(root, name)
                files[os.path.relpath(path, step_dir)] = os.path.getsize(path)
        write_json(os.path.join(step_dir, _FILES), {"files": files})

    def wait_until_finished(self) -> None:
        """Block until pending asynchronous saves are written (and recorded)."""
        self._finish_pending()

    # -- restoring ---------------------------------------------------------------------

    def restore(self, step: int | None = None, *, target: Any = None) -> Any:
        """Restore a step's pytree, into the structure and shardings of ``target``.

        Without ``step``, the newest step is tried first; a damaged one (a file missing,
        truncated or emptied, or a read that fails) is passed over with a warning naming
        it, and the next older step is tried. :attr:`restored_step` says which step was
        restored.

        Args:
          step: a specific step (no fallback), or None for the newest complete one.
          target: a pytree of arrays or ``jax.ShapeDtypeStruct`` (with ``sharding`` for a
            sharded restore) giving the structure, dtypes and placement; None restores the
            saved structure as saved. A target without any sharding (e.g. from
            ``jax.eval_shape``) restores as None does: where the checkpoint was saved on
            other devices or processes than this run's, or in a multi-process job, every
            process gets its own whole NumPy copy.

        Returns:
          The restored pytree.

        Raises:
          CheckpointError: no step in the directory, the requested step missing or
            damaged, or every step damaged (one line naming each).
        """
        self._finish_pending()
        steps = self.all_steps()
        if step is not None:
            step = int(step)
            if step not in steps:
                raise CheckpointError(
                    f"no checkpoint for step {step} in {self.directory} (steps: {steps})"
                )
            candidates = [step]
        else:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory}")
            candidates = list(reversed(steps))
        abstract = None if target is None else abstract_tree(target)
        problems = []
        for s in candidates:
            problem = self.check(s)
            if problem is None:
                try:
                    out = self._restore_step(s, abstract)
                except Exception as e:  # noqa: BLE001 -- any failure to read is a damaged step
                    problem = f"reading it failed ({_one_line(e)})"
                else:
                    if problems:
                        log.warning(
                            "checkpoint %s: restored step %d instead; skipped %s",
                            self.directory,
                            s,
                            "; ".join(problems),
                        )
                    self.restored_step = s
                    return out[_STATE]
            self._damaged.add(s)
            problems.append(f"step {s}: {problem}")
            if step is None:
                log.warning("checkpoint %s step %d is damaged: %s", self.directory, s, problem)
        if step is not None:
            raise CheckpointError(f"checkpoint {self.directory} {problems[0]}")
        raise CheckpointError(f"no complete checkpoint in {self.directory}: {'; '.join(problems)}")

    def _restore_step(self, step: int, abstract: Any) -> Any:
        """One step's items; into the target's placements, or, for a target without any
        (or none), as saved or, where the saving topology differs from this run's (more
        processes or devices now or then), replicated."""

        def restore(tree_abstract):
            return self._mgr.restore(
                step,
                args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(tree_abstract)}),
            )

        if abstract is not None and not _unplaced(abstract):
            return restore(abstract)
        # Multi-process, orbax would put every array on the first device, which one process
        # alone holds; every process reads the whole tree instead.
        if jax.process_count() == 1:
            try:
                return restore(abstract)
            except ValueError as e:
                if "topology" not in str(e).lower():
                    raise
        if abstract is None:
            out = restore(self._replicated_abstract(step))
        else:
            out = restore(_replicated(abstract))
        return {_STATE: _local_copy(out[_STATE])}

    def _replicated_abstract(self, step: int) -> Any:
        """The saved tree's shapes, replicated on every device of every process.

        A run on another topology than the saving one (e.g. a multi-process job) cannot
        restore "as saved"; every process reads the whole tree instead.
        """
        meta = ocp.StandardCheckpointHandler().metadata(
            pathlib.Path(self.directory) / str(step) / _STATE
        )
        return _replicated(getattr(meta, "tree", meta))

    def metadata(self, step: int | None = None) -> dict:
        """The JSON record saved with ``step`` (default: :attr:`restored_step`, else the
        newest complete step)."""
        self._finish_pending()
        if step is None:
            step = self.restored_step if self.restored_step is not None else self.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        try:
            out = self._mgr.restore(
                int(step), args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()})
            )
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"checkpoint {self.directory} step {step}: metadata unreadable ({_one_line(e)})"
            ) from e
        return dict(out[_META] or {})

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Finish pending saves and release orbax's resources."""
        try:
            self._finish_pending()
        finally:
            self._mgr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
