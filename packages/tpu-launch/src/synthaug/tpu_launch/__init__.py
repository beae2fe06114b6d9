"""synthaug.tpu_launch: Multi-host JAX initialisation, device meshes, sharding rules and launchers for TPU pods and local multi-process runs."""

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

_LAZY = {
    "DistributedSettings": "distributed",
    "DistributedSettingsError": "distributed",
    "add_distributed_flags": "distributed",
    "initialize_from_flags": "distributed",
    "detect_settings": "distributed",
    "initialize": "distributed",
    "is_initialized": "distributed",
    "process_count": "distributed",
    "process_index": "distributed",
    "tpu_vm_detected": "distributed",
    "managed_cluster_detected": "distributed",
    "exit_code": "runtime",
    "first_failure": "runtime",
    "initialize_runtime": "runtime",
    "is_multiprocess": "runtime",
    "mesh_from_config": "runtime",
    "rules_from_config": "runtime",
    "child_environment": "local",
    "free_port": "local",
    "launch_local": "local",
    "DEFAULT_AXES": "mesh",
    "MeshShapeError": "mesh",
    "make_mesh": "mesh",
    "resolve_mesh_shape": "mesh",
    "DATA_AXES": "sharding",
    "ShardingRuleError": "sharding",
    "batch_spec": "sharding",
    "gather_to_host0": "sharding",
    "host_local_to_global": "sharding",
    "host_shard_info": "sharding",
    "match_rule": "sharding",
    "num_batch_slices": "sharding",
    "param_paths": "sharding",
    "partition_specs": "sharding",
    "process_allgather": "sharding",
    "shard_params": "sharding",
    "sharded_init": "sharding",
    "shardings_for": "sharding",
    "Step": "tpu",
    "TpuSlice": "tpu",
    "plan_tpu_run": "tpu",
    "run_steps": "tpu",
}


def __getattr__(name: str) -> object:
    # Submodules load on first use, so that the launcher (``synthaug-launch local``) starts
    # its processes without importing JAX itself.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


try:
    __version__ = _metadata.version("synthaug-tpu-launch")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DATA_AXES",
    "DEFAULT_AXES",
    "DistributedSettings",
    "DistributedSettingsError",
    "MeshShapeError",
    "ShardingRuleError",
    "Step",
    "TpuSlice",
    "__version__",
    "add_distributed_flags",
    "batch_spec",
    "child_environment",
    "detect_settings",
    "exit_code",
    "first_failure",
    "free_port",
    "gather_to_host0",
    "host_local_to_global",
    "host_shard_info",
    "initialize",
    "initialize_from_flags",
    "initialize_runtime",
    "is_initialized",
    "is_multiprocess",
    "launch_local",
    "make_mesh",
    "managed_cluster_detected",
    "match_rule",
    "mesh_from_config",
    "num_batch_slices",
    "param_paths",
    "partition_specs",
    "plan_tpu_run",
    "process_allgather",
    "process_count",
    "process_index",
    "resolve_mesh_shape",
    "rules_from_config",
    "run_steps",
    "shard_params",
    "sharded_init",
    "shardings_for",
    "tpu_vm_detected",
]

if TYPE_CHECKING:  # pragma: no cover - for static analysis only
    from .distributed import (
        DistributedSettings,
        DistributedSettingsError,
        add_distributed_flags,
        detect_settings,
        initialize,
        initialize_from_flags,
        is_initialized,
        managed_cluster_detected,
        process_count,
        process_index,
        tpu_vm_detected,
    )
    from .local import child_environment, free_port, launch_local
    from .mesh import DEFAULT_AXES, MeshShapeError, make_mesh, resolve_mesh_shape
    from .runtime import (
        exit_code,
        first_failure,
        initialize_runtime,
        is_multiprocess,
        mesh_from_config,
        rules_from_config,
    )
    from .sharding import (
        DATA_AXES,
        ShardingRuleError,
        batch_spec,
        gather_to_host0,
        host_local_to_global,
        host_shard_info,
        match_rule,
        num_batch_slices,
        param_paths,
        partition_specs,
        process_allgather,
        shard_params,
        sharded_init,
        shardings_for,
    )
    from .tpu import Step, TpuSlice, plan_tpu_run, run_steps
