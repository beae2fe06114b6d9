"""Where the training state and the batches live on a device mesh.

The parameters' placement is given as ``param_specs``: a tree of ``PartitionSpec`` with the
structure of the parameters, or a function from the (abstract) parameters to one (e.g.
``lambda p: tpu_launch.partition_specs(p, rules)``, tpu-launch's regex rule matcher; this
package does not match rules itself). ``None`` leaves are replicated.
The EMA parameters get the same specs; an optimizer-state leaf that mirrors a parameter
(Adam's moments: its path ends with the parameter's path and it has the parameter's shape)
gets that parameter's spec, every other leaf (step counts, Adafactor's factored moments,
a flattened optimizer's vectors) is replicated.

The batch is split along its leading dimension over the mesh's data axes (those of
:data:`DATA_AXES` the mesh has): with a ``data`` axis only, the state is replicated and the
compiler reduces the gradients over ``data``; with ``fsdp`` too (and rules naming it), the
parameters and optimizer state are split as well and gathered where they are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXES",
    "batch_sharding",
    "param_path",
    "param_specs",
    "state_shardings",
]

#: Mesh axes that split the batch.
DATA_AXES: tuple[str, ...] = ("data", "fsdp")

ParamSpecs = Callable[[Any], Any] | Any


def param_path(path) -> str:
    """A '/'-joined name of a pytree key path (e.g. ``down_0_res_0/conv_0/kernel``)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


_path = param_path


def _data_axes(mesh: Mesh) -> tuple[str, ...]:
    return tuple(a for a in DATA_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a global batch: the leading dimension over the mesh's data axes."""
    axes = _data_axes(mesh)
    return NamedSharding(mesh, P(axes) if axes else P())


def _check(name: str, shape: tuple[int, ...], spec: P, mesh: Mesh) -> None:
    if len(spec) > len(shape):
        raise ValueError(
            f"parameter {name!r} of shape {shape} has {len(shape)} dims but its spec is {spec}"
        )
    for dim, entry in enumerate(spec):
        if entry is None:
            continue
        axes = entry if isinstance(entry, tuple | list) else (entry,)
        for a in axes:
            if a not in mesh.shape:
                raise ValueError(
                    f"the spec {spec} of parameter {name!r} names mesh axis {a!r}; the mesh "
                    f"has axes {tuple(mesh.axis_names)}"
                )
        n = int(np.prod([mesh.shape[a] for a in axes]))
        if shape[dim] % n:
            raise ValueError(
                f"parameter {name!r} of shape {shape}: dim {dim} ({shape[dim]}) is not "
                f"divisible by mesh axes {tuple(axes)} of size {n} (spec {spec})"
            )


def param_specs(params: Any, specs: ParamSpecs | None, mesh: Mesh) -> Any:
    """A ``PartitionSpec`` per parameter, checked against ``mesh``.

    Args:
      params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
      specs: a tree of ``PartitionSpec`` (``None`` leaves: replicated) with the structure of
        ``params``, a function ``params -> such a tree``, or None (all replicated).
      mesh: the device mesh (the specs' axes must exist and divide the dimensions).

    Returns:
      A tree of ``PartitionSpec`` with the structure of ``params``.

    Raises:
      ValueError: a tree of another structure, a leaf that is not a ``PartitionSpec``, an
        unknown mesh axis or a dimension the axes do not divide (naming the parameter, its
        shape and the spec).
    """
    if specs is None:
        return jax.tree.map(lambda _: P(), params)
    if callable(specs):
        specs = specs(params)
    is_spec = lambda x: x is None or isinstance(x, P)  # noqa: E731
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = jax.tree.leaves(specs, is_leaf=is_spec)
    if len(leaves) != len(flat) or jax.tree.structure(specs, is_leaf=is_spec) != jax.tree.structure(
        jax.tree.map(lambda _: 0, params)
    ):
        raise ValueError("param_specs must have the structure of the parameters")
    out = []
    for (path, leaf), s in zip(flat, leaves, strict=True):
        s = P() if s is None else s
        if not isinstance(s, P):
            raise ValueError(f"param_specs[{_path(path)!r}] must be a PartitionSpec, got {s!r}")
        _check(_path(path), tuple(np.shape(leaf)), s, mesh)
        out.append(s)
    return jax.tree_util.tree_unflatten(treedef, out)


_param_specs = param_specs  # state_shardings' argument of that name shadows it


def state_shardings(state: Any, mesh: Mesh, param_specs: ParamSpecs | None = None) -> Any:
    """``NamedSharding``s for a whole :class:`~synthaug.diffusion_core.train.TrainState`.

    Args:
      state: the state or its abstract version (``jax.eval_shape``).
      mesh: the device mesh.
      param_specs: the parameters' ``PartitionSpec`` tree or a function producing it from
        the (abstract) parameters (see the module docstring), or None
        (everything replicated: data parallelism).

    Returns:
      A ``TrainState`` of ``NamedSharding``.
    """
    specs = _param_specs(state.params, param_specs, mesh)
    by_path = {}
    for (path, leaf), s in zip(
        jax.tree_util.tree_flatten_with_path(state.params)[0],
        jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P)),
        strict=True,
    ):
        by_path[_path(path)] = (tuple(np.shape(leaf)), s)

    def opt_spec(path, leaf):
        parts, shape = _path(path).split("/"), tuple(np.shape(leaf))
        for i in range(len(parts)):  # the longest suffix that is a parameter's path
            hit = by_path.get("/".join(parts[i:]))
            if hit is not None:
                return hit[1] if hit[0] == shape else P()
        return P()

    named = lambda s: NamedSharding(mesh, s)  # noqa: E731
    is_spec = lambda x: isinstance(x, P)  # noqa: E731
    return state.replace(
        step=named(P()),
        params=jax.tree.map(named, specs, is_leaf=is_spec),
        ema_params=jax.tree.map(named, specs, is_leaf=is_spec),
        opt_state=jax.tree.map(
            named, jax.tree_util.tree_map_with_path(opt_spec, state.opt_state), is_leaf=is_spec
        ),
    )
