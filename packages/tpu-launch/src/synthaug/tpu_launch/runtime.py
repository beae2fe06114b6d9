"""One call to join a run, and the mesh and shardings a program's config asks for.

`initialize_runtime()` is what a program calls first. Alone (no launcher, no cluster) it does
nothing beyond recording that it ran. As one process of a multi-process job (the
``synthaug-launch local`` environment, a Cloud TPU VM of a pod slice, a SLURM step or an
Open MPI job, as `initialize` detects them) it starts JAX's distributed runtime and makes the
job fail fast:

* a process dies (killed, out of memory, a lost host): the coordination service misses its
  heartbeats for ``heartbeat_timeout`` seconds (20 by default, JAX's own is 100) and stops
  every other process with an error that names the lost one;
* a process raises: instead of waiting at the exit barrier for processes that are blocked
  in a collective with it (five minutes by default), it prints the traceback and a line
  naming itself, records the failure in the coordination service's key-value store, and
  leaves at once (``os._exit``). The others' collectives then fail within seconds and their
  message names the process that failed first.

`mesh_from_config` and `rules_from_config` turn the plain config values (``{"data": -1,
"fsdp": 1}``, ``[("kernel$", ("fsdp", None))]``) into a `Mesh` and sharding rules.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import jax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ._env import ENV_FAILURE_DIR
from .distributed import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DistributedSettings,
    initialize,
)
from .mesh import MeshShapeError, make_mesh
from .sharding import ShardingRuleError

__all__ = [
    "ENV_HEARTBEAT_TIMEOUT",
    "exit_code",
    "first_failure",
    "initialize_runtime",
    "is_multiprocess",
    "mesh_from_config",
    "rules_from_config",
]

#: Overrides the heartbeat timeout (seconds) of `initialize_runtime`.
ENV_HEARTBEAT_TIMEOUT = "SYNTHAUG_HEARTBEAT_TIMEOUT"

_FAILED_DIR = "synthaug/failed/"
_settings: DistributedSettings | None = None


def is_multiprocess() -> bool:
    """Whether `initialize_runtime` joined a job of more than one process."""
    return _settings is not None and (_settings.num_processes or 1) > 1


def initialize_runtime(
    *,
    heartbeat_timeout: int | None = None,
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT,
    initialization_timeout: int = 300,
    fail_fast: bool = True,
    environ: Mapping[str, str] | None = None,
) -> DistributedSettings:
    """Start JAX's distributed runtime when this process is part of a multi-process job.

    Idempotent; call it before any JAX computation. Alone it changes nothing.

    Args:
      heartbeat_timeout: seconds without heartbeats after which a process counts as lost
        (default ``$SYNTHAUG_HEARTBEAT_TIMEOUT`` or 20).
      shutdown_timeout: seconds processes wait for each other at a normal exit.
      initialization_timeout: seconds to wait for every process to connect.
      fail_fast: in a multi-process job, make an uncaught exception end this process at
        once (see the module docstring) instead of waiting at the exit barrier.
      environ: the environment to read (default `os.environ`).

    Returns:
      The `DistributedSettings` in effect (``mode == "single"`` when alone).

    Raises:
      DistributedSettingsError: partial or contradictory settings, a bad
        ``SYNTHAUG_HEARTBEAT_TIMEOUT``.
    """
    global _settings
    env = os.environ if environ is None else environ
    if heartbeat_timeout is None:
        raw = env.get(ENV_HEARTBEAT_TIMEOUT, "")
        try:
            heartbeat_timeout = int(raw) if raw else DEFAULT_HEARTBEAT_TIMEOUT
        except ValueError:
            heartbeat_timeout = 0
        if heartbeat_timeout < 1:
            from .distributed import DistributedSettingsError

            raise DistributedSettingsError(
                f"{ENV_HEARTBEAT_TIMEOUT} must be a positive number of seconds, got {raw!r}"
            )
    settings = initialize(
        initialization_timeout=initialization_timeout,
        heartbeat_timeout=heartbeat_timeout,
        shutdown_timeout=shutdown_timeout,
        environ=environ,
    )
    _settings = settings
    if fail_fast and is_multiprocess() and sys.excepthook is not _fail_fast_hook:
        sys.excepthook = _fail_fast_hook
    return settings


def _client() -> Any:
    try:
        from jax._src import distributed as _jd

        return _jd.global_state.client
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        return None


def _with_deadline(fn: Any, seconds: float) -> Any:
    """``fn()`` in a daemon thread; None when it raises or takes longer than ``seconds``."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fn())
        except Exception:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return result[0] if result else None


def first_failure() -> tuple[int, str] | None:
    """The process that recorded a failure first in this job, and its message, if any.

    Reads the coordination service's key-value store (a process that raised records itself
    there before it exits); ``None`` when alone, when nothing is recorded or when the
    service cannot be reached within two seconds.
    """
    client = _client()
    if client is None:
        return None
    entries = _with_deadline(lambda: client.key_value_dir_get(_FAILED_DIR), 2.0)
    if not entries:
        return None
    records = []
    for _key, value in entries:
        stamp, _, rest = str(value).partition(" ")
        pid, _, message = rest.partition(" ")
        try:
            records.append((float(stamp), int(pid), message))
        except ValueError:
            continue
    if not records:
        return None
    _, pid, message = min(records)
    return pid, message


def _record_failure(pid: int, code: int, summary: str, *, first: bool) -> None:
    """Leave this process's failure where the other processes and the launcher see it."""
    stamp = f"{time.time():.6f}"
    client = _client()
    if client is not None:
        record = f"{stamp} {pid} {summary}"
        _with_deadline(lambda: client.key_value_set(f"{_FAILED_DIR}{pid}", record), 2.0)
    directory = os.environ.get(ENV_FAILURE_DIR)
    if directory:
        path = os.path.join(directory, str(pid))
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(f"{stamp} {code} {'first' if first else 'stopped'}\n")
            os.replace(path + ".tmp", path)
        except OSError:
            pass


def _leave(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _fail_fast_hook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    code = 130 if issubclass(exc_type, KeyboardInterrupt) else 1
    try:
        traceback.print_exception(exc_type, exc, tb)
        pid, count = jax.process_index(), jax.process_count()
        summary = f"{exc_type.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        earlier = first_failure()
        stopped = earlier is not None and earlier[0] != pid
        _record_failure(pid, code, summary, first=not stopped)
        if stopped:
            assert earlier is not None
            line = (
                f"[synthaug] process {pid} of {count} stops: process {earlier[0]} failed "
                f"first ({earlier[1]})"
            )
        else:
            line = (
                f"[synthaug] process {pid} of {count} failed ({summary}); leaving now so "
                "that the other processes stop too"
            )
        sys.stderr.write(line + "\n")
    finally:
        _leave(code)


def exit_code(code: int) -> int:
    """End a process of a multi-process job at once when it exits with an error.

    A command line's ``main`` that catches its errors and returns an exit code calls
    ``raise SystemExit(exit_code(code))``: a non-zero code in a multi-process job flushes the
    output and leaves through ``os._exit`` (the normal exit would wait at the exit barrier
    for processes that are blocked in a collective with this one); otherwise it returns
    ``code``.

    Args:
      code: the exit code.

    Returns:
      ``code`` (only when alone or when ``code == 0``).
    """
    if code and is_multiprocess():
        pid = jax.process_index()
        earlier = first_failure()
        _record_failure(pid, code, f"exit code {code}", first=earlier is None or earlier[0] == pid)
        sys.stderr.write(
            f"[synthaug] process {pid} of {jax.process_count()} failed "
            f"(exit code {code}); leaving now so that the other processes stop too\n"
        )
        _leave(code)
    return code


def _axes_dict(axes: Any) -> dict[str, int]:
    if hasattr(axes, "to_dict"):  # ml_collections.ConfigDict
        axes = axes.to_dict()
    if not isinstance(axes, Mapping):
        raise MeshShapeError(f"mesh must map axis names to sizes, got {axes!r}")
    return dict(axes)


def mesh_from_config(axes: Any, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh of a config's ``mesh`` section: axis name -> size, ``-1`` = the rest.

    Args:
      axes: a mapping (or ``ml_collections.ConfigDict``) such as ``{"data": -1, "fsdp": 1}``.
      devices: the devices to lay out (default every device of every process).

    Returns:
      The `Mesh` (`make_mesh`).

    Raises:
      MeshShapeError: axes that are not a mapping of sizes or that do not fit the devices
        (the message names the device count).
    """
    return make_mesh(_axes_dict(axes), devices=devices)


def _spec(entries: Any, where: str) -> P:
    if entries is None:
        return P()
    if isinstance(entries, P):
        return entries
    if not isinstance(entries, list | tuple):
        raise ShardingRuleError(f"{where}: a partition spec must be a tuple, got {entries!r}")
    out: list[Any] = []
    for e in entries:
        if e is None or isinstance(e, str):
            out.append(e)
        elif isinstance(e, list | tuple) and all(isinstance(a, str) for a in e):
            out.append(tuple(e))
        else:
            raise ShardingRuleError(
                f"{where}: a spec entry must be a mesh axis, a tuple of axes or None, got {e!r}"
            )
    return P(*out)


def rules_from_config(rules: Iterable[Any]) -> list[tuple[str, P]]:
    """Sharding rules from a config's ``sharding.rules``: ``(regex, spec tuple)`` pairs.

    Args:
      rules: pairs such as ``("conv.*/kernel$", (None, None, None, "fsdp"))``; a spec entry
        is a mesh axis name, a tuple of names or ``None``.

    Returns:
      ``[(regex, PartitionSpec), ...]`` for `shardings_for` / `shard_params`.

    Raises:
      ShardingRuleError: a rule that is not such a pair.
    """
    out = []
    for i, rule in enumerate(rules or ()):
        if not isinstance(rule, list | tuple) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ShardingRuleError(
                f"sharding rule #{i} must be a (regex, partition spec) pair, got {rule!r}"
            )
        out.append((rule[0], _spec(rule[1], f"sharding rule #{i} ({rule[0]!r})")))
    return out
