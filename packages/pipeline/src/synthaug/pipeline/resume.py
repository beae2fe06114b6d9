"""Resuming a streamed input pipeline without replaying it: tf.data iterator checkpoints.

A training loop that resumes at step k from its model checkpoint must see the batches k,
k + 1, ... that an uninterrupted run would have seen. Reading and dropping the first k batches
(what an iterable input does) costs k batches of I/O and decoding: at step 100K of a batch-2048
run, 200M images. :class:`CheckpointedStream` instead saves the state of the tf.data iterator
(``tf.train.Checkpoint(iterator=...)``: file positions, shuffle buffers and their random
state, prefetched elements) every ``save_every`` steps, *before* the model checkpoint of that
step is written, and restores it on resume: the time to resume depends on the size of the
pipeline's buffers, not on k. Pipelines should be one pass per epoch with a seed of their own
(``steps_per_epoch``): a restored ``shuffle(reshuffle_each_iteration=True).repeat()`` does
not reproduce the passes after the restored one.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import shutil
from collections.abc import Callable
from typing import Any

from synthaug.pipeline.io import atomic_dir, write_json

__all__ = ["INPUT_STATE_DIR", "CheckpointedStream", "stream_layout"]

log = logging.getLogger(__name__)

INPUT_STATE_DIR = "input_state"
LAYOUT_FILE = "layout.json"
_STEP_RE = re.compile(r"^step-(\d+)$")


def stream_layout(
    directory: str | os.PathLike,
    data_cfg,
    per_process_batch: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> int:
    """Steps per epoch of a process's stream of whole batches over its share of a split.

    Counted once (:func:`synthaug.pipeline.data.count_examples`) and recorded in
    ``directory/layout.json``; a resumed run reads the record instead of counting again, so
    its epochs are the first run's.
    """
    from synthaug.pipeline.data import count_examples

    path = pathlib.Path(directory) / LAYOUT_FILE
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec.get("batch") == int(per_process_batch):
            return int(rec["steps_per_epoch"])
    n = count_examples(data_cfg, process_index=process_index, process_count=process_count)
    spe = n // int(per_process_batch)
    if spe >= 1:
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"examples": n, "batch": int(per_process_batch), "steps_per_epoch": spe}
        write_json(path, rec)
    return spe


class CheckpointedStream:
    """``batch_at(step)`` over an endless tf.data pipeline, resumable at checkpointed steps.

    Args:
      make_dataset: ``() -> tf.data.Dataset``: the same (deterministic, endless) pipeline on
        every call.
      directory: where this process keeps its iterator states (``step-K/`` per saved step).
      save_every: save the state of position K (the next batch is batch K) when K is a
        multiple of this; use the model's checkpoint interval, so that every model checkpoint
        has its input state.
      keep: how many of the most recent states to keep (at least the model checkpoints kept,
        plus one for a model save interrupted by a kill).
      convert: applied to each element (e.g. tensors to a NumPy batch).
      steps_per_epoch: if given, ``make_dataset(epoch)`` is one epoch's pipeline (e.g. a
        shuffle seeded by the epoch) and step ``e * steps_per_epoch + i`` is its batch ``i``.

    Calls must be ``batch_at(0), batch_at(1), ...`` with restarts allowed: a call with a step
    other than the next one repositions the stream, from that step's saved state (or at 0
    from the start). A step with no saved state falls back to the newest earlier one and
    reads the batches in between (``replayed`` counts them).
    """

    def __init__(
        self,
        make_dataset: Callable[[], Any],
        directory: str | os.PathLike,
        *,
        save_every: int,
        keep: int,
        convert: Callable[[Any], Any] = lambda x: x,
        steps_per_epoch: int | None = None,
    ):
        if save_every < 1 or keep < 1:
            raise ValueError(f"save_every and keep must be >= 1, got {save_every}, {keep}")
        self._make = make_dataset
        self.directory = pathlib.Path(directory)
        self._save_every = int(save_every)
        self._keep = int(keep)
        self._convert = convert
        self._spe = None if steps_per_epoch is None else int(steps_per_epoch)
        self._it = None
        self._next: int | None = None
        self._last: tuple[int, Any] | None = None
        self.resumed_from: int | None = None  # the step restored from a saved state
        self.replayed = 0  # batches read only to reach a position (no saved state)
        self.batches_read = 0

    # -- positions -------------------------------------------------------------------------
    def saved_steps(self) -> list[int]:
        """Steps whose iterator state is saved, ascending."""
        if not self.directory.is_dir():
            return []
        steps = (_STEP_RE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in steps if m)

    def _checkpoint(self):
        import tensorflow as tf

        return tf.train.Checkpoint(iterator=self._it)

    def _dataset(self, epoch: int):
        import tensorflow as tf

        # The readers' skip reports run Python callbacks (stateful ops without a state worth
        # saving): checkpoint the pipeline around them instead of refusing to.
        options = tf.data.Options()
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        ds = self._make() if self._spe is None else self._make(epoch)
        return ds.with_options(options)

    def _seek(self, step: int) -> None:
        epoch, base = 0, 0
        if self._spe is not None:
            epoch = step // self._spe
            base = epoch * self._spe
        self._it = iter(self._dataset(epoch))
        self._next = base
        if step == base:
            return
        earlier = [s for s in self.saved_steps() if base < s <= step]
        if earlier:
            s = earlier[-1]
            self._checkpoint().read(
                str(self.directory / f"step-{s}" / "iterator")
            ).assert_consumed()
            self._next = s
            self.resumed_from = s
            log.info("input stream restored at step %d from %s", s, self.directory)
        if self._next < step:
            log.warning(
                "no saved input state for step %d in %s: reading %d batches to reach it",
                step,
                self.directory,
                step - self._next,
            )
        while self._next < step:
            next(self._it)
            self._next += 1
            self.replayed += 1

    def _save(self, step: int) -> None:
        with atomic_dir(self.directory / f"step-{step}") as tmp:
            self._checkpoint().write(str(tmp / "iterator"))
        for s in self.saved_steps()[: -self._keep]:
            shutil.rmtree(self.directory / f"step-{s}", ignore_errors=True)

    # -- the data callable -----------------------------------------------------------------
    def __call__(self, step: int) -> Any:
        step = int(step)
        if self._last is not None and self._last[0] == step:
            return self._last[1]  # asked again for the same step (e.g. a shape probe)
        new_epoch = self._spe is not None and step % self._spe == 0
        if self._it is None or step != self._next or new_epoch:
            self._seek(step)
        element = next(self._it)
        self.batches_read += 1
        self._next = step + 1
        if self._next % self._save_every == 0:
            self._save(self._next)
        batch = self._convert(element)
        self._last = (step, batch)
        return batch

    def report(self) -> dict[str, Any]:
        """How this run's input was positioned: for ``metrics.json``."""
        return {
            "resumed_from": self.resumed_from,
            "replayed_batches": self.replayed,
            "batches_read": self.batches_read,
        }
