"""FID statistics over a device mesh and over processes, equal to a one-process run.

Three pieces, for an evaluation that runs on several devices and several processes (a TPU pod
slice, a multi-node GPU job, ``synthaug-launch local``):

* :func:`make_sharded_feature_fn`: the FID Inception network compiled once for a mesh. Each
  process passes its own images; they enter as one global array whose batch dimension is
  sharded over the mesh (every device computes its slice), and each process gets back the
  features of its own images, in its order.
* :func:`streaming_statistics`: runs the feature function over this process's batches and
  folds the pool3 features into a float64 :class:`RunningStats`. The processes stay in step
  (a process with no images left feeds an empty batch until every process is done), and the
  result is merged over all processes by :func:`allgather_stats`.
* :func:`allgather_stats` / :func:`merge_states`: every process's float64 accumulator
  (count, mean, centred second-moment matrix) is all-gathered bit for bit (float64 travels as
  pairs of uint32, so it is exact without ``jax_enable_x64``) and merged in process order
  with Chan et al.'s parallel update. Every process ends with the same bits, and the result
  equals a single pass over all the features up to float64 round-off.

Every process must make the same calls in the same order (they are collectives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthaug.metrics.inception import FIDInception
from synthaug.metrics.stats import RunningStats

__all__ = [
    "allgather_stats",
    "make_sharded_feature_fn",
    "merge_states",
    "streaming_statistics",
]


def _data_size(mesh: Mesh, axes: Sequence[str]) -> int:
    return int(np.prod([mesh.shape[a] for a in axes]))


def make_sharded_feature_fn(
    params: Mapping[str, Any],
    mesh: Mesh,
    *,
    batch_size: int,
    image_shape: tuple[int, int],
    data_axes: Sequence[str] | None = None,
    fuse_1x1: bool = True,
    logits_bias: bool = True,
) -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
    """The FID Inception network over a mesh: batches sharded over devices and processes.

    Args:
      params: from :func:`synthaug.metrics.load_fid_inception` (replicated on every device).
      mesh: the device mesh (every process passes the same mesh over all devices).
      batch_size: images per step over all processes; each process contributes
        ``batch_size // jax.process_count()`` images (its *local batch*), which must be a
        multiple of its devices on ``data_axes``.
      image_shape: (height, width) of every image (one compiled program).
      data_axes: the mesh axes the batch is sharded over (default: all of them; the network
        is small, so every device takes a slice of the batch).
      fuse_1x1, logits_bias: see :class:`synthaug.metrics.FIDInception`.

    Returns:
      ``fn(images) -> (pool3 [n, 2048], logits [n, 1008])`` as float32 NumPy arrays, where
      ``images`` is this process's [n, H, W, 3] uint8 (or float in [0, 1]) batch with
      ``0 <= n <= local_batch`` (it is padded to the local batch; the padding is dropped from
      the result). A collective: every process calls it the same number of times.
      ``fn.local_batch`` and ``fn.image_shape`` tell the sizes.
    """
    axes = tuple(mesh.axis_names if data_axes is None else data_axes)
    unknown = [a for a in axes if a not in mesh.axis_names]
    if unknown:
        raise ValueError(f"data_axes {unknown} are not axes of the mesh {mesh.axis_names}")
    procs = jax.process_count()
    if batch_size < 1 or batch_size % procs:
        raise ValueError(
            f"batch_size {batch_size} must be a positive multiple of {procs} processes"
        )
    if batch_size % _data_size(mesh, axes):
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of the {_data_size(mesh, axes)} devices "
            f"on the mesh axes {axes}"
        )
    local_batch = batch_size // procs
    h, w = (int(s) for s in image_shape)
    model = FIDInception(fuse_1x1=fuse_1x1, logits_bias=logits_bias)
    batch_spec = P(axes)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, batch_spec)
    variables = jax.device_put({"params": params}, replicated)

    @jax.jit
    def forward(variables, images):
        images = jax.lax.with_sharding_constraint(images, batch_sharding)
        if images.dtype == jnp.uint8:
            x = images.astype(jnp.float32) / 255.0
        else:
            x = images.astype(jnp.float32)
        pool3, logits = model.apply(variables, x)
        return (
            jax.lax.with_sharding_constraint(pool3, batch_sharding),
            jax.lax.with_sharding_constraint(logits, batch_sharding),
        )

    from jax.experimental import multihost_utils

    def fn(images):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(
                f"images must be [n, {h}, {w}, 3] (the image_shape of this feature function), "
                f"got shape {images.shape}"
            )
        if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
            raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        n = images.shape[0]
        if n > local_batch:
            raise ValueError(f"a process passes at most its local batch {local_batch}, got {n}")
        padded = np.zeros((local_batch, h, w, 3), images.dtype)
        padded[:n] = images
        global_images = multihost_utils.host_local_array_to_global_array(padded, mesh, batch_spec)
        pool3, logits = forward(variables, global_images)
        pool3, logits = multihost_utils.global_array_to_host_local_array(
            (pool3, logits), mesh, (batch_spec, batch_spec)
        )
        return np.asarray(pool3)[:n], np.asarray(logits)[:n]

    fn.local_batch = local_batch
    fn.image_shape = (h, w)
    return fn


def _process_any(flag: bool) -> bool:
    """True on every process when ``flag`` is True on any of them (a collective)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.max(multihost_utils.process_allgather(np.int32(flag))) > 0)


def _chunks(batches: Iterable[Any], size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of [n, ...] arrays into arrays of at most ``size`` rows."""
    for batch in batches:
        batch = np.asarray(batch)
        for lo in range(0, batch.shape[0], size):
            yield batch[lo : lo + size]


def streaming_statistics(
    local_batches: Iterable[Any],
    feature_fn: Callable[[Any], tuple[np.ndarray, np.ndarray]],
    *,
    keep_logits: bool = False,
) -> tuple[RunningStats, np.ndarray | None]:
    """Pool3 statistics of every process's images, reduced exactly over the processes.

    Args:
      local_batches: this process's images, an iterable of [n, H, W, 3] arrays of any n (they
        are re-cut into the feature function's local batch); processes may hold different
        numbers of images.
      feature_fn: from :func:`make_sharded_feature_fn`.
      keep_logits: also return this process's logits, in its order.

    Returns:
      ``(stats, logits)``: the float64 :class:`RunningStats` over the pool3 features of all
      processes' images (the same bits on every process), and this process's [n, 1008]
      logits (None unless ``keep_logits``).
    """
    h, w = feature_fn.image_shape
    stats = RunningStats()
    logits: list[np.ndarray] = []
    chunks = _chunks(local_batches, feature_fn.local_batch)
    empty = np.zeros((0, h, w, 3), np.uint8)
    while True:
        batch = next(chunks, None)
        if not _process_any(batch is not None):
            break
        pool3, lg = feature_fn(empty if batch is None else batch)
        stats.update(pool3)
        if keep_logits:
            logits.append(lg)
    stats = allgather_stats(stats)
    return stats, (np.concatenate(logits) if keep_logits and logits else None)


def _state_vector(stats: RunningStats, dim: int) -> np.ndarray:
    """count, mean and the upper triangle of M2 as one float64 vector."""
    if stats.count == 0:
        return np.zeros(1 + dim + dim * (dim + 1) // 2, np.float64)
    state = stats.state_dict()
    iu = np.triu_indices(dim)
    return np.concatenate([[float(state["count"])], state["mean"], state["m2"][iu]])


def _from_vector(v: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    iu = np.triu_indices(dim)
    m2 = np.zeros((dim, dim), np.float64)
    m2[iu] = v[1 + dim :]
    m2 = m2 + np.triu(m2, 1).T
    return {"count": np.int64(v[0]), "mean": v[1 : 1 + dim].copy(), "m2": m2}


def merge_states(states: Sequence[Mapping[str, Any]]) -> RunningStats:
    """Merge per-process :meth:`RunningStats.state_dict` outputs, in the order given.

    Deterministic: the same states in the same order give the same bits. Empty states
    (count 0) are skipped.

    Args:
      states: ``{"count", "mean", "m2"}`` per process, in process order.

    Returns:
      A RunningStats over all of them.
    """
    total: RunningStats | None = None
    for state in states:
        part = RunningStats.from_state_dict(state)
        if total is None:
            total = RunningStats(part.dim)
        total.merge(part)
    if total is None:
        raise ValueError("merge_states needs at least one state")
    return total


def _encode(stats: RunningStats, dim: int) -> np.ndarray:
    """The accumulator as uint32 words (float64 bit patterns): exact through any all-gather."""
    return np.ascontiguousarray(_state_vector(stats, dim)).view(np.uint32)


def _decode_and_merge(gathered: np.ndarray, dim: int) -> RunningStats:
    """Inverse of :func:`_encode` for a [processes, words] array, merged in process order."""
    rows = np.ascontiguousarray(np.asarray(gathered).astype(np.uint32))
    rows = rows.reshape(rows.shape[0], -1)
    states = [_from_vector(row.view(np.float64), dim) for row in rows]
    return merge_states([s for s in states if int(s["count"]) > 0] or states[:1])


def allgather_stats(stats: RunningStats, *, dim: int | None = None) -> RunningStats:
    """Merge every process's accumulator into one, identical on all processes (a collective).

    Args:
      stats: this process's accumulator (it may be empty).
      dim: the feature dimension, needed only if ``stats`` has seen no features (2048, the
        Inception pool3 size, when None).

    Returns:
      ``stats`` itself with one process; otherwise a new RunningStats over every process's
      features, merged in process order from exact float64 copies.
    """
    if jax.process_count() == 1:
        return stats
    from jax.experimental import multihost_utils

    dim = stats.dim or dim or 2048
    gathered = multihost_utils.process_allgather(_encode(stats, dim))
    return _decode_and_merge(np.asarray(gathered), dim)
