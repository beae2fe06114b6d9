"""Metrics where users look for them: TensorBoard event files and a JSON summary."""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any

from synthaug.pipeline.io import write_json

__all__ = ["MetricWriter", "StageTimer", "read_metrics"]


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )


class MetricWriter:
    """Writes scalars as TensorBoard event files (``tf.summary``) and a ``metrics.json``.

    The JSON summary holds the latest value of every scalar plus whatever :meth:`summary`
    adds; it is rewritten atomically on :meth:`flush` and :meth:`close`.

    Args:
      workdir: directory for ``metrics.json`` and the ``tb/`` event files.
      tensorboard: write TensorBoard event files (needs TensorFlow).
    """

    def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._summary: dict[str, Any] = {}
        path = self.workdir / "metrics.json"
        if path.is_file():  # a resumed run keeps what it had
            self._summary = json.loads(path.read_text())
        self._tb = None
        if tensorboard:
            import tensorflow as tf

            self._tb = tf.summary.create_file_writer(str(self.workdir / "tb"))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Record scalars at ``step`` (non-finite values are kept, as NaN, in both outputs)."""
        clean = {k: float(v) for k, v in values.items()}
        if self._tb is not None:
            import tensorflow as tf

            with self._tb.as_default(step=int(step)):
                for k, v in clean.items():
                    # What tf.summary.scalar writes, without needing the tensorboard package.
                    tf.summary.write(
                        k, tf.constant(v, tf.float32), step=int(step), metadata=_scalar_metadata()
                    )
        last = self._summary.setdefault("scalars", {})
        for k, v in clean.items():
            last[k] = {"step": int(step), "value": v if math.isfinite(v) else None}

    def summary(self, **values: Any) -> None:
        """Add top-level entries to the JSON summary (e.g. final metrics, wall times)."""
        self._summary.update(values)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()
        write_json(self.workdir / "metrics.json", self._summary)

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir: str | os.PathLike) -> dict[str, Any]:
    """The ``metrics.json`` summary of a finished stage's workdir."""
    from synthaug.pipeline.io import require_file

    path = require_file(pathlib.Path(workdir) / "metrics.json", "metrics summary")
    return json.loads(path.read_text())


class StageTimer:
    """Wall time (and process CPU time) of named stages: ``with timer("finetune"): ...``."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cpu_times: dict[str, float] = {}
        self._name: str | None = None

    def __call__(self, name: str) -> StageTimer:
        self._name = name
        return self

    def __enter__(self) -> StageTimer:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        assert self._name is not None
        name = self._name
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - self._t0
        self.cpu_times[name] = self.cpu_times.get(name, 0.0) + time.process_time() - self._c0
        self._name = None
