"""Data parallelism over a mesh that may span several processes.

Every axis of the mesh is a data axis for the classifiers: the state is replicated, and a
global batch of ``B`` examples is split over all ``mesh.size`` devices. Each process
supplies the rows that belong to its own devices (``local_batch_size``); the global array
is assembled with ``jax.make_array_from_process_local_data``, so one jitted (GSPMD) step
reduces gradients and BatchNorm statistics over the whole global batch.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "batch_sharding",
    "data_size",
    "global_batch",
    "local_batch_size",
    "local_rows",
    "process_all",
    "replicated",
    "shard_batch",
]


def data_size(mesh: Mesh | None) -> int:
    """How many shards a batch is split into (all devices of the mesh; 1 without one)."""
    return 1 if mesh is None else int(mesh.size)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The first axis split over every mesh axis."""
    return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def _local_devices(mesh: Mesh) -> int:
    pi = jax.process_index()
    return sum(1 for d in mesh.devices.flat if d.process_index == pi)


def local_batch_size(global_batch_size: int, mesh: Mesh | None) -> int:
    """This process's share of a global batch (all of it without a mesh or with one process).

    Raises:
      ValueError: the global batch does not split evenly over the mesh's devices.
    """
    n = data_size(mesh)
    if global_batch_size % n:
        raise ValueError(
            f"batch size {global_batch_size} is not a multiple of the {n} devices of the mesh"
        )
    if mesh is None:
        return int(global_batch_size)
    return int(global_batch_size) // n * _local_devices(mesh)


def global_batch(batch: dict, mesh: Mesh | None, global_batch_size: int | None = None) -> dict:
    """Assemble a global batch from each process's local rows.

    Args:
      batch: dict of numpy arrays, this process's rows (the whole batch with one process).
      mesh: the mesh, or None (device arrays on the default device).
      global_batch_size: the global batch (default: local rows x number of processes
        sharing the mesh in equal parts).

    Returns:
      dict of global jax arrays sharded along the first axis.
    """
    if mesh is None:
        return {k: jax.numpy.asarray(v) for k, v in batch.items()}
    sharding = batch_sharding(mesh)
    n_local = _local_devices(mesh)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % n_local:
            raise ValueError(
                f"batch[{name!r}] has {value.shape[0]} examples, not a multiple of this "
                f"process's {n_local} devices on the mesh"
            )
        g = global_batch_size or value.shape[0] // n_local * mesh.size
        out[name] = jax.make_array_from_process_local_data(sharding, value, (g, *value.shape[1:]))
    return out


def shard_batch(batch: dict, mesh: Mesh | None) -> dict:
    """Place a (process-local) host batch on the mesh, split along the first axis.

    Args:
      batch: dict of numpy arrays with a common leading batch axis: this process's rows.
      mesh: a mesh, or None (returned as device arrays).

    Returns:
      dict of (sharded) jax arrays.
    """
    return global_batch(batch, mesh)


def local_rows(x: jax.Array) -> np.ndarray:
    """The rows of a batch-sharded global array that live on this process, in order."""
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    seen, parts = set(), []
    for s in sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0):
        start = s.index[0].start or 0
        if start not in seen:
            seen.add(start)
            parts.append(np.asarray(s.data))
    return np.concatenate(parts)


def process_all(flag: bool) -> np.ndarray:
    """``flag`` of every process (one small collective; no collective with one process)."""
    if jax.process_count() == 1:
        return np.asarray([bool(flag)])
    return np.asarray(multihost_utils.process_allgather(np.asarray(bool(flag)))).reshape(-1)
