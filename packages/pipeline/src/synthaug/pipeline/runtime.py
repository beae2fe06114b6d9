"""The one place where a stage joins a multi-process run and gets its device mesh.

`stage_runtime(cfg)` starts JAX's distributed runtime through tpu-launch when the process is
one of several (``synthaug-launch local``, a TPU pod slice, a SLURM step, an Open MPI job;
nothing happens when it runs alone) and builds the stage's mesh from its ``mesh.*`` keys
(axis sizes, ``-1`` = the rest of the devices). `stages.run_stage` calls it once and hands
the mesh to the stage.
"""

from __future__ import annotations

from typing import Any

from synthaug.pipeline.errors import ConfigError

__all__ = ["barrier", "local_batch_sharding", "stage_rules", "stage_runtime"]


def stage_runtime(cfg) -> Any:
    """Join the run (if multi-process) and build the mesh of ``cfg.mesh``.

    Args:
      cfg: a validated stage config (its ``mesh`` section is optional; without one every
        device is on the ``data`` axis).

    Returns:
      The `jax.sharding.Mesh` over every device of every process.

    Raises:
      ConfigError: mesh axes that do not fit the devices (the message names the count).
    """
    from synthaug import tpu_launch as tl

    tl.initialize_runtime()
    axes = cfg.mesh if "mesh" in cfg else tl.DEFAULT_AXES
    try:
        return tl.mesh_from_config(axes)
    except tl.MeshShapeError as e:
        raise ConfigError(f"config.mesh: {e}") from None


def barrier(name: str) -> None:
    """Wait until every process of a multi-process run reaches ``barrier(name)`` (alone: at
    once)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def stage_rules(cfg) -> list:
    """The ``(regex, PartitionSpec)`` rules of ``cfg.sharding.rules`` (empty: replicated)."""
    from synthaug import tpu_launch as tl

    if "sharding" not in cfg or "rules" not in cfg.sharding:
        return []
    try:
        return tl.rules_from_config(cfg.sharding.rules)
    except tl.ShardingRuleError as e:
        raise ConfigError(f"config.sharding.rules: {e}") from None


def local_batch_sharding(mesh=None):
    """A sharding that splits a batch's leading dim over this process's own devices.

    Args:
      mesh: the stage's mesh (default: every device); only this process's devices are used.

    Returns:
      ``(NamedSharding over a 1-D "data" mesh of the local devices, local device count)``.
    """
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    pid = jax.process_index()
    devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
    local = [d for d in devices if d.process_index == pid] or jax.local_devices()
    local_mesh = Mesh(np.asarray(local, dtype=object), ("data",))
    return NamedSharding(local_mesh, P("data")), len(local)
