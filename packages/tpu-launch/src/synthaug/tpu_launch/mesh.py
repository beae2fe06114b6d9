"""Device meshes with named axes (data, fsdp, model) built from a small config."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

__all__ = ["DEFAULT_AXES", "MeshShapeError", "make_mesh", "resolve_mesh_shape"]

#: The usual axes: everything on data parallelism.
DEFAULT_AXES: dict[str, int] = {"data": -1, "fsdp": 1, "model": 1}


class MeshShapeError(ValueError):
    """Mesh axes that do not fit the available devices."""


def resolve_mesh_shape(axes: Mapping[str, int], *, num_devices: int) -> dict[str, int]:
    """Fill in the axis marked ``-1`` so that the axes use exactly ``num_devices`` devices.

    Args:
      axes: ordered mapping axis name -> size; at most one size may be ``-1`` ("the rest").
      num_devices: number of devices the mesh must cover.

    Returns:
      A new dict with the same axis order and every size resolved.

    Raises:
      MeshShapeError: empty or non-string axis names, sizes other than positive integers or
        ``-1``, more than one ``-1``, or sizes whose product does not fit ``num_devices``
        (the message names the device count).
    """
    if not axes:
        raise MeshShapeError("mesh axes must name at least one axis, got an empty mapping")
    sizes: dict[str, int] = {}
    for name, size in axes.items():
        if not isinstance(name, str) or not name:
            raise MeshShapeError(f"mesh axis names must be non-empty strings, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise MeshShapeError(f"mesh axis {name!r} must have an integer size, got {size!r}")
        size = int(size)
        if size == 0 or size < -1:
            raise MeshShapeError(
                f"mesh axis {name!r} must have a positive size or -1 (the rest), got {size}"
            )
        sizes[name] = size
    rest = [n for n, s in sizes.items() if s == -1]
    if len(rest) > 1:
        raise MeshShapeError(f"at most one mesh axis may be -1 (the rest), got {rest}")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if rest:
        if num_devices % fixed:
            raise MeshShapeError(
                f"mesh axes {dict(axes)} do not fit {num_devices} devices: the fixed axes use "
                f"{fixed} devices, which does not divide {num_devices}"
            )
        sizes[rest[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise MeshShapeError(
            f"mesh axes {dict(axes)} need {fixed} devices but there are {num_devices} devices"
        )
    return sizes


def make_mesh(
    axes: Mapping[str, int] | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """Build a `jax.sharding.Mesh` with named axes over all (or the given) devices.

    On TPU the devices are laid out with `jax.experimental.mesh_utils.create_device_mesh`,
    which follows the physical interconnect topology; elsewhere (or if that fails) they are
    taken in `jax.devices()` order, which keeps each process's devices together.

    Args:
      axes: ordered mapping axis name -> size, ``-1`` meaning "the rest", e.g.
        ``{"data": -1, "fsdp": 1, "model": 1}`` (the default).
      devices: devices to use (default: `jax.devices()`, every device of every process).

    Returns:
      A mesh whose axis names are the keys of ``axes``, in order.

    Raises:
      MeshShapeError: the axes do not fit the device count (see `resolve_mesh_shape`).
    """
    axes = DEFAULT_AXES if axes is None else axes
    devs = list(jax.devices() if devices is None else devices)
    sizes = resolve_mesh_shape(axes, num_devices=len(devs))
    shape = tuple(sizes.values())
    device_array = None
    if devs[0].platform == "tpu":
        from jax.experimental import mesh_utils

        try:
            device_array = mesh_utils.create_device_mesh(
                shape, devs, allow_split_physical_axes=True
            )
        except (ValueError, NotImplementedError, AssertionError):
            device_array = None
    if device_array is None:
        device_array = np.asarray(devs, dtype=object).reshape(shape)
    return Mesh(device_array, tuple(sizes))
