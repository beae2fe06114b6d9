"""synthaug.tpu_launch: Multi-host JAX initialisation, device meshes, sharding rules and launchers for TPU pods and local multi-process runs."""

from importlib import metadata as _metadata

from .distributed import (
    DistributedSettings,
    DistributedSettingsError,
    detect_settings,
    initialize,
    is_initialized,
    process_count,
    process_index,
    tpu_vm_detected,
)
from .local import child_environment, free_port, launch_local
from .mesh import DEFAULT_AXES, MeshShapeError, make_mesh, resolve_mesh_shape
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
    "batch_spec",
    "child_environment",
    "detect_settings",
    "free_port",
    "gather_to_host0",
    "host_local_to_global",
    "host_shard_info",
    "initialize",
    "is_initialized",
    "launch_local",
    "make_mesh",
    "match_rule",
    "num_batch_slices",
    "param_paths",
    "partition_specs",
    "plan_tpu_run",
    "process_allgather",
    "process_count",
    "process_index",
    "resolve_mesh_shape",
    "run_steps",
    "shard_params",
    "sharded_init",
    "shardings_for",
    "tpu_vm_detected",
]
