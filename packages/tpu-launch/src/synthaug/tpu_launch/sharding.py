"""Sharding rules for parameter pytrees, global batches from per-host data, gathers to host 0.

Rules are an ordered list of ``(regex, PartitionSpec)`` pairs. Each parameter's path is its
pytree keys joined with ``/`` (``"encoder/block_0/dense/kernel"``); the first rule whose regex
matches (`re.search`) gives its `PartitionSpec`; parameters that no rule matches are
replicated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXES",
    "Rules",
    "ShardingRuleError",
    "batch_spec",
    "gather_to_host0",
    "host_local_to_global",
    "host_shard_info",
    "match_rule",
    "num_batch_slices",
    "param_paths",
    "partition_specs",
    "process_allgather",
    "shard_params",
    "shardings_for",
    "sharded_init",
]

#: Mesh axes that split the batch (FSDP shards the batch as well as the parameters).
DATA_AXES: tuple[str, ...] = ("data", "fsdp")

Rules = Sequence[tuple[str, P]] | Mapping[str, P]


class ShardingRuleError(ValueError):
    """A sharding rule that does not fit a parameter, a mesh or a batch."""


def _key_str(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path_str(path: Sequence[Any]) -> str:
    return "/".join(_key_str(k) for k in path)


def param_paths(params: Any) -> list[str]:
    """The ``/``-joined path of every leaf of ``params``, in tree-flatten order.

    Args:
      params: a pytree (nested dicts of arrays, as Flax Linen produces).

    Returns:
      One path string per leaf.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [_path_str(path) for path, _ in leaves]


def _compile_rules(rules: Rules) -> list[tuple[re.Pattern[str], P]]:
    items: Iterable[tuple[str, P]] = rules.items() if isinstance(rules, Mapping) else rules
    compiled = []
    for i, item in enumerate(items):
        try:
            pattern, spec = item
        except (TypeError, ValueError):
            raise ShardingRuleError(
                f"sharding rule #{i} must be a (regex, PartitionSpec) pair, got {item!r}"
            ) from None
        if not isinstance(spec, P):
            if spec is None:
                spec = P()
            elif isinstance(spec, tuple | list):
                spec = P(*spec)
            else:
                raise ShardingRuleError(
                    f"sharding rule {pattern!r} must map to a PartitionSpec, got {spec!r}"
                )
        try:
            compiled.append((re.compile(pattern), spec))
        except re.error as e:
            raise ShardingRuleError(f"sharding rule {pattern!r} is not a valid regex: {e}") from e
    return compiled


def match_rule(path: str, rules: Rules) -> P:
    """The `PartitionSpec` the first matching rule gives ``path`` (replicated if none).

    Args:
      path: a ``/``-joined parameter path.
      rules: ordered ``(regex, PartitionSpec)`` pairs or a mapping regex -> spec.

    Returns:
      The matching spec, or ``PartitionSpec()`` (replicated).
    """
    for regex, spec in _compile_rules(rules):
        if regex.search(path):
            return spec
    return P()


def _spec_axes(spec: P) -> list[str]:
    names: list[str] = []
    for entry in spec:
        if entry is None:
            continue
        names.extend(entry if isinstance(entry, tuple | list) else [entry])
    return names


def partition_specs(params: Any, rules: Rules, *, mesh: Mesh | None = None) -> Any:
    """A pytree of `PartitionSpec` with the structure of ``params``.

    Args:
      params: a pytree of arrays (or `jax.ShapeDtypeStruct`, e.g. from `jax.eval_shape`).
      rules: ordered ``(regex, PartitionSpec)`` pairs; first match wins, default replicated.
      mesh: if given, also check that every named axis exists and divides the dimension.

    Returns:
      A pytree of `PartitionSpec` matching ``params``.

    Raises:
      ShardingRuleError: a spec with more entries than the parameter has dimensions, an axis
        that is not in the mesh, or a dimension the mesh axes do not divide (the message
        names the parameter path, its shape and the rule).
    """
    compiled = _compile_rules(rules)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    specs = []
    for path, leaf in flat:
        name = _path_str(path)
        spec = P()
        pattern = None
        for regex, s in compiled:
            if regex.search(name):
                spec, pattern = s, regex.pattern
                break
        shape = tuple(np.shape(leaf))
        if len(spec) > len(shape):
            raise ShardingRuleError(
                f"parameter {name!r} of shape {shape} has {len(shape)} dims but rule "
                f"{pattern!r} gives {spec} with {len(spec)} entries"
            )
        if mesh is not None:
            for axis in _spec_axes(spec):
                if axis not in mesh.shape:
                    raise ShardingRuleError(
                        f"rule {pattern!r} for parameter {name!r} names mesh axis {axis!r}; "
                        f"the mesh has axes {tuple(mesh.axis_names)}"
                    )
            for dim, entry in enumerate(spec):
                if entry is None:
                    continue
                axes = entry if isinstance(entry, tuple | list) else (entry,)
                n = int(np.prod([mesh.shape[a] for a in axes]))
                if shape[dim] % n:
                    raise ShardingRuleError(
                        f"parameter {name!r} of shape {shape}: dim {dim} of size {shape[dim]} "
                        f"is not divisible by mesh axes {tuple(axes)} of total size {n} "
                        f"(rule {pattern!r})"
                    )
        specs.append(spec)
    return jax.tree_util.tree_unflatten(treedef, specs)


def shardings_for(params: Any, rules: Rules, mesh: Mesh) -> Any:
    """A pytree of `NamedSharding` on ``mesh`` for ``params`` (see `partition_specs`)."""
    specs = partition_specs(params, rules, mesh=mesh)
    return jax.tree_util.tree_map(
        lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P)
    )


def _put_global(x: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.sharding == sharding:
            return x
        return jax.jit(lambda a: a, out_shardings=sharding)(x)
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def shard_params(params: Any, rules: Rules, mesh: Mesh) -> Any:
    """Place a params pytree on ``mesh`` following ``rules``.

    Every process must pass the same values (e.g. initialised from the same seed); each
    process only copies the slices its own devices hold.

    Args:
      params: pytree of host arrays or single-process `jax.Array`s.
      rules: ordered ``(regex, PartitionSpec)`` pairs; first match wins, default replicated.
      mesh: the device mesh.

    Returns:
      A pytree of global `jax.Array`s with `NamedSharding`s on ``mesh``.

    Raises:
      ShardingRuleError: a rule that does not fit a parameter or the mesh.
    """
    shardings = shardings_for(params, rules, mesh)
    return jax.tree_util.tree_map(_put_global, params, shardings)


def sharded_init(
    init_fn: Callable[..., Any], rules: Rules, mesh: Mesh, *args: Any, **kwargs: Any
) -> Any:
    """Run ``init_fn(*args, **kwargs)`` under `jax.jit` so its output is born sharded.

    The parameter shapes come from `jax.eval_shape`, so a model too large for one device can
    be initialised directly into its shards.

    Args:
      init_fn: a pure function returning a params pytree (e.g. ``model.init``).
      rules: ordered ``(regex, PartitionSpec)`` pairs.
      mesh: the device mesh.
      *args: positional arguments of ``init_fn`` (e.g. a `jax.random` key).
      **kwargs: keyword arguments of ``init_fn``.

    Returns:
      The params pytree as global `jax.Array`s sharded according to ``rules``.
    """
    shapes = jax.eval_shape(init_fn, *args, **kwargs)
    shardings = shardings_for(shapes, rules, mesh)
    return jax.jit(init_fn, out_shardings=shardings)(*args, **kwargs)


def batch_spec(mesh: Mesh, *, data_axes: Sequence[str] = DATA_AXES) -> P:
    """The `PartitionSpec` splitting a batch's leading dim over the mesh's data axes.

    Args:
      mesh: the device mesh.
      data_axes: candidate batch axes; those present in the mesh are used, in order.

    Returns:
      ``P((axes...),)``, or ``P()`` (replicated) if the mesh has none of them.
    """
    axes = tuple(a for a in data_axes if a in mesh.shape)
    return P(axes) if axes else P()


def num_batch_slices(mesh: Mesh, spec: P | None = None) -> int:
    """Into how many slices ``spec`` (default `batch_spec`) splits a batch's leading dim.

    Args:
      mesh: the device mesh.
      spec: the batch `PartitionSpec`.

    Returns:
      The product of the sizes of the mesh axes of the spec's first entry (1 if none).
    """
    spec = batch_spec(mesh) if spec is None else spec
    if not len(spec) or spec[0] is None:
        return 1
    axes = spec[0] if isinstance(spec[0], tuple | list) else (spec[0],)
    return int(np.prod([mesh.shape[a] for a in axes]))


def _local_row_sets(mesh: Mesh, spec: P) -> tuple[dict[int, frozenset[int]], int]:
    sharding = NamedSharding(mesh, spec)
    n_rows = num_batch_slices(mesh, spec)
    rows: dict[int, set[int]] = {}
    for device, index in sharding.devices_indices_map((n_rows,)).items():
        start, stop, _ = index[0].indices(n_rows)
        rows.setdefault(device.process_index, set()).update(range(start, stop))
    return {p: frozenset(r) for p, r in rows.items()}, n_rows


def host_shard_info(
    mesh: Mesh | None = None, *, spec: P | None = None, process_index: int | None = None
) -> tuple[int, int]:
    """Which part of the global batch this host reads: ``(shard_index, shard_count)``.

    Without a mesh this is ``(jax.process_index(), jax.process_count())``. With a mesh it is
    derived from the batch sharding: hosts whose devices hold the same rows (e.g. when a
    model axis spans hosts) read the same shard, so the count is the number of distinct row
    blocks and every host of one block gets the same index. Give the input pipeline these
    two numbers (e.g. ``tf.data.Dataset.shard(count, index)``) and a per-host batch of
    ``global_batch // shard_count`` examples.

    Args:
      mesh: the device mesh (optional).
      spec: the batch `PartitionSpec` (default `batch_spec(mesh)`).
      process_index: the process to ask about (default this one).

    Returns:
      ``(index, count)`` with ``0 <= index < count``.
    """
    pid = jax.process_index() if process_index is None else int(process_index)
    if mesh is None:
        return pid, jax.process_count()
    spec = batch_spec(mesh) if spec is None else spec
    row_sets, _ = _local_row_sets(mesh, spec)
    if pid not in row_sets:
        raise ShardingRuleError(f"process {pid} has no devices in the mesh")
    blocks = sorted(set(row_sets.values()), key=min)
    return blocks.index(row_sets[pid]), len(blocks)


def host_local_to_global(batch: Any, mesh: Mesh, spec: P | None = None) -> Any:
    """Turn each host's part of a batch into one global `jax.Array` per leaf.

    Each host passes the examples of its shard (see `host_shard_info`), all with the same
    leading size; the global batch is their concatenation in shard order. On one process
    this is a plain sharded `device_put`.

    Args:
      batch: pytree of host-local numpy arrays with a leading batch dim.
      mesh: the device mesh.
      spec: the batch `PartitionSpec` (default `batch_spec(mesh)`: the leading dim over the
        mesh's data axes).

    Returns:
      The pytree as global `jax.Array`s sharded by ``spec``.

    Raises:
      ShardingRuleError: a leaf whose leading dim is not divisible by this host's number of
        batch slices.
    """
    spec = batch_spec(mesh) if spec is None else spec
    sharding = NamedSharding(mesh, spec)
    row_sets, _ = _local_row_sets(mesh, spec)
    local_rows = len(row_sets.get(jax.process_index(), ()))

    def convert(path: Sequence[Any], x: Any) -> jax.Array:
        x = np.asarray(x)
        if x.ndim == 0 or (local_rows and x.shape[0] % local_rows):
            raise ShardingRuleError(
                f"batch entry {_path_str(path) or '<root>'!r} of shape {x.shape}: the leading "
                f"dim must be divisible by this host's {local_rows} batch slices of {spec}"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree_util.tree_map_with_path(convert, batch)


def process_allgather(tree: Any) -> Any:
    """Every host gets the full value of every (global) array in ``tree`` as numpy.

    A collective: every process must call it with the same structure.

    Args:
      tree: pytree of global `jax.Array`s (or host values, returned as numpy).

    Returns:
      The same pytree of numpy arrays holding the full global values.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out: list[Any] = [None] * len(leaves)
    pending: list[tuple[int, jax.Array, NamedSharding]] = []
    for i, x in enumerate(leaves):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            mesh = getattr(x.sharding, "mesh", None)
            if mesh is None:
                from jax.experimental import multihost_utils

                out[i] = np.asarray(multihost_utils.process_allgather(x, tiled=True))
            else:
                pending.append((i, x, NamedSharding(mesh, P())))
        else:
            out[i] = np.asarray(jax.device_get(x))
    if pending:
        # One compiled identity replicates every remaining array (one compile, not one each).
        replicated = jax.jit(lambda xs: xs, out_shardings=[s for _, _, s in pending])(
            [x for _, x, _ in pending]
        )
        for (i, _, _), r in zip(pending, replicated, strict=True):
            out[i] = np.asarray(r.addressable_data(0))
    return jax.tree_util.tree_unflatten(treedef, out)


def gather_to_host0(tree: Any) -> Any | None:
    """Gather global arrays to numpy on host 0 (e.g. to save a checkpoint or metrics).

    A collective: every process must call it. Process 0 gets the numpy pytree; the other
    processes get ``None``.

    Args:
      tree: pytree of global `jax.Array`s.

    Returns:
      The numpy pytree on process 0, ``None`` elsewhere.
    """
    gathered = process_allgather(tree)
    return gathered if jax.process_index() == 0 else None
