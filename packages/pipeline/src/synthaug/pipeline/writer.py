"""Metrics where users look for them: TensorBoard event files and a JSON summary."""

from __future__ import annotations

import math
import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any

from synthaug.pipeline.io import write_json

__all__ = ["MetricWriter", "StageTimer", "read_metrics"]


class MetricWriter:
    """Writes scalars as TensorBoard event files and a ``metrics.json``.

    The event files are written by ``tensorboardX`` (``simple_value`` scalars, which
    TensorBoard's scalars dashboard reads), which does not import TensorFlow. The JSON summary holds the latest value of
    every scalar plus whatever :meth:`summary` adds; it is rewritten atomically on
    :meth:`flush` and :meth:`close`.

    Args:
      workdir: directory for ``metrics.json`` and the ``tb/`` event files.
      tensorboard: write TensorBoard event files.
    """

    def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._summary: dict[str, Any] = {}
        path = self.workdir / "metrics.json"
        if path.is_file():  # a resumed run keeps what it had
            from synthaug.pipeline.io import read_json

            self._summary = read_json(path, "metrics summary")
            if not isinstance(self._summary, dict):
                from synthaug.pipeline.errors import ConfigError

                raise ConfigError(f"metrics summary {str(path)!r} is not a JSON object")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.workdir / "tb"))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Record scalars at ``step`` (non-finite values are kept, as NaN, in both outputs)."""
        clean = {k: float(v) for k, v in values.items()}
        if self._tb is not None:
            for tag, v in clean.items():
                self._tb.add_scalar(tag, v, int(step))
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
    from synthaug.pipeline.errors import ConfigError
    from synthaug.pipeline.io import read_json

    path = pathlib.Path(workdir) / "metrics.json"
    data = read_json(path, "metrics summary")
    if not isinstance(data, dict):
        raise ConfigError(f"metrics summary {str(path)!r} is not a JSON object")
    return data


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
