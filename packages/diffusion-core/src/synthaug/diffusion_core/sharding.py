"""Where the training state and the batches live on a device mesh.

Rules have the format of ``synthaug.tpu_launch.sharding``: an ordered list of ``(regex,
PartitionSpec)`` pairs matched (``re.search``) against each parameter's ``/``-joined path
(:func:`param_path`, e.g. ``down_0_res_0/conv_0/kernel``); the
first match gives the parameter's ``PartitionSpec``, unmatched parameters are replicated.
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

import re
from collections.abc import Iterable, Mapping, Sequence
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

Rules = Sequence[tuple[str, Any]] | Mapping[str, Any]


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


def _compile(rules: Rules | None) -> list[tuple[re.Pattern[str], P]]:
    if not rules:
        return []
    items: Iterable = rules.items() if isinstance(rules, Mapping) else rules
    out = []
    for i, item in enumerate(items):
        try:
            pattern, spec = item
        except (TypeError, ValueError):
            raise ValueError(
                f"rules[{i}] must be a (regex, PartitionSpec) pair, got {item!r}"
            ) from None
        if spec is None:
            spec = P()
        elif isinstance(spec, tuple | list) and not isinstance(spec, P):
            spec = P(*spec)
        if not isinstance(spec, P):
            raise ValueError(f"rule {pattern!r} must map to a PartitionSpec, got {spec!r}")
        try:
            out.append((re.compile(pattern), spec))
        except re.error as e:
            raise ValueError(f"rule {pattern!r} is not a valid regex: {e}") from None
    return out


def _data_axes(mesh: Mesh) -> tuple[str, ...]:
    return tuple(a for a in DATA_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a global batch: the leading dimension over the mesh's data axes."""
    axes = _data_axes(mesh)
    return NamedSharding(mesh, P(axes) if axes else P())


def _check(name: str, shape: tuple[int, ...], spec: P, mesh: Mesh, pattern: str) -> None:
    if len(spec) > len(shape):
        raise ValueError(
            f"parameter {name!r} of shape {shape} has {len(shape)} dims but rule {pattern!r} "
            f"gives {spec}"
        )
    for dim, entry in enumerate(spec):
        if entry is None:
            continue
        axes = entry if isinstance(entry, tuple | list) else (entry,)
        for a in axes:
            if a not in mesh.shape:
                raise ValueError(
                    f"rule {pattern!r} for parameter {name!r} names mesh axis {a!r}; the mesh "
                    f"has axes {tuple(mesh.axis_names)}"
                )
        n = int(np.prod([mesh.shape[a] for a in axes]))
        if shape[dim] % n:
            raise ValueError(
                f"parameter {name!r} of shape {shape}: dim {dim} ({shape[dim]}) is not "
                f"divisible by mesh axes {tuple(axes)} of size {n} (rule {pattern!r})"
            )


def param_specs(params: Any, rules: Rules | None, mesh: Mesh) -> Any:
    """A ``PartitionSpec`` per parameter (first matching rule; replicated if none).

    Args:
      params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
      rules: ``(regex, PartitionSpec)`` pairs (tpu-launch's format), or None.
      mesh: the device mesh (the specs' axes must exist and divide the dimensions).

    Returns:
      A tree of ``PartitionSpec`` with the structure of ``params``.

    Raises:
      ValueError: a malformed rule, an unknown mesh axis or a dimension the axes do not
        divide (naming the parameter, its shape and the rule).
    """
    compiled = _compile(rules)

    def spec(path, leaf):
        name = _path(path)
        for regex, s in compiled:
            if regex.search(name):
                _check(name, tuple(np.shape(leaf)), s, mesh, regex.pattern)
                return s
        return P()

    return jax.tree_util.tree_map_with_path(spec, params)


def state_shardings(state: Any, mesh: Mesh, rules: Rules | None = None) -> Any:
    """``NamedSharding``s for a whole :class:`~synthaug.diffusion_core.train.TrainState`.

    Args:
      state: the state or its abstract version (``jax.eval_shape``).
      mesh: the device mesh.
      rules: the parameters' partition rules (see the module docstring), or None
        (everything replicated: data parallelism).

    Returns:
      A ``TrainState`` of ``NamedSharding``.
    """
    specs = param_specs(state.params, rules, mesh)
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
