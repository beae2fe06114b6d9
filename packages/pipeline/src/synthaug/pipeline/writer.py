"""Metrics where users look for them: TensorBoard event files and a JSON summary."""

from __future__ import annotations

import math
import os
import pathlib
import socket
import struct
import time
import uuid
from collections.abc import Mapping
from typing import Any

from synthaug.pipeline.io import write_json

__all__ = ["MetricWriter", "StageTimer", "read_metrics"]


def _event(wall_time: float, *, step: int = 0, file_version: str = "", summary: bytes = b""):
    """A serialised TensorBoard ``Event`` protocol buffer."""
    from synthaug.imagenet_data import records as pb

    out = pb.pb_double(1, wall_time)
    if step:
        out += pb.pb_varint(2, step)
    if file_version:
        out += pb.pb_bytes(3, file_version.encode())
    if summary:
        out += pb.pb_bytes(5, summary)
    return out


def _scalar_summary(values: Mapping[str, float]) -> bytes:
    """A ``Summary`` of float32 scalars as ``tf.summary.scalar`` writes them: a rank-0 float
    tensor per tag, with the ``scalars`` plugin in its metadata."""
    from synthaug.imagenet_data import records as pb

    metadata = pb.pb_bytes(1, pb.pb_bytes(1, b"scalars"))  # plugin_data.plugin_name
    out = b""
    for tag, v in values.items():
        # TensorProto: dtype DT_FLOAT (1), an empty (scalar) shape, one packed float_val.
        tensor = pb.pb_varint(1, 1) + pb.pb_bytes(2, b"") + pb.pb_bytes(5, struct.pack("<f", v))
        value = pb.pb_bytes(1, tag.encode()) + pb.pb_bytes(8, tensor) + pb.pb_bytes(9, metadata)
        out += pb.pb_bytes(1, value)
    return out


class MetricWriter:
    """Writes scalars as TensorBoard event files and a ``metrics.json``.

    The event files are written without TensorFlow (the format of ``tf.summary.scalar``:
    TFRecord-framed ``Event`` protocol buffers). The JSON summary holds the latest value of
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
            from synthaug.imagenet_data.records import frame_record

            tb = self.workdir / "tb"
            tb.mkdir(exist_ok=True)
            now = time.time()
            name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}"
            name += f".{uuid.uuid4().hex[:8]}.v2"
            self._tb = open(tb / name, "ab")  # noqa: SIM115 (closed by close())
            self._tb.write(frame_record(_event(now, file_version="brain.Event:2")))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Record scalars at ``step`` (non-finite values are kept, as NaN, in both outputs)."""
        clean = {k: float(v) for k, v in values.items()}
        if self._tb is not None:
            from synthaug.imagenet_data.records import frame_record

            event = _event(time.time(), step=int(step), summary=_scalar_summary(clean))
            self._tb.write(frame_record(event))
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
