"""Multi-host initialisation of JAX's multi-controller runtime.

`initialize()` looks at its arguments, the environment and the machine, decides which kind of
run this is, and calls `jax.distributed.initialize` accordingly:

* ``single``: one process, nothing to connect; `jax.distributed` is left alone.
* ``explicit``: a coordinator address, a process count and a process id given as arguments
  (for example from command-line flags) or as the environment variables
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (what
  ``synthaug-launch local`` sets for each process it starts).
* ``tpu``: a Cloud TPU VM (one host of a pod slice); JAX finds the coordinator and the
  process ids itself from the TPU metadata.
* ``slurm``: a task of a SLURM job step with more than one task (``srun``); JAX's SLURM
  cluster detection takes the coordinator (the first node of the step), the process count
  and the ids from ``SLURM_*``.
* ``ompi``: a rank of an Open MPI job with more than one rank (``mpirun``); JAX's Open MPI
  cluster detection reads ``OMPI_*``.

Calling `initialize()` again with the same settings returns the same result; different
settings in one process are an error, as are partial or contradictory settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import inspect
import os
import threading
from collections.abc import Mapping, Sequence

import jax

from ._env import ENV_COORDINATOR_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID

__all__ = [
    "ENV_COORDINATOR_ADDRESS",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "DistributedSettings",
    "DistributedSettingsError",
    "add_distributed_flags",
    "detect_settings",
    "initialize",
    "initialize_from_flags",
    "is_initialized",
    "managed_cluster_detected",
    "process_count",
    "process_index",
    "tpu_vm_detected",
]


# Environment variables present on Cloud TPU VMs and TPU containers on GKE.
_TPU_ENV_VARS = (
    "TPU_WORKER_HOSTNAMES",
    "TPU_PROCESS_ADDRESSES",
    "TPU_WORKER_ID",
    "TPU_ACCELERATOR_TYPE",
    "TPU_NAME",
)
_GOOGLE_PCI_VENDOR = "0x1ae0"
# PCI device ids of TPU chips (v3, v4, v5p, v5e, v6e, ...); Google's other PCI devices (gVNIC
# network cards, for one) share the vendor id, so the device id must be checked too.
_TPU_PCI_DEVICES = frozenset({"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"})

_CLUSTERS = ("auto", "single", "explicit", "tpu", "slurm", "ompi")
# Managed clusters whose settings JAX's own cluster detection reads (``cluster_detection_method``).
_MANAGED = ("tpu", "slurm", "ompi")
_SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)
_OMPI_URI = "OMPI_MCA_orte_hnp_uri"

#: Seconds without heartbeats after which the coordination service declares a process dead
#: and stops the others (JAX's default is 100 s).
DEFAULT_HEARTBEAT_TIMEOUT = 20
#: Seconds the processes wait for each other at the barrier of a normal exit (JAX's default).
DEFAULT_SHUTDOWN_TIMEOUT = 300


class DistributedSettingsError(ValueError):
    """Missing, partial or contradictory multi-host settings."""


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """How this process takes part in a (possibly multi-host) run.

    Attributes:
      mode: ``"single"``, ``"explicit"``, ``"tpu"``, ``"slurm"`` or ``"ompi"``.
      coordinator_address: ``host:port`` of process 0's coordinator service (``explicit``
        mode only; JAX finds it itself on TPU VMs).
      num_processes: number of processes (``None`` in ``tpu`` mode before initialisation).
      process_id: this process's index (``None`` in ``tpu`` mode before initialisation).
      local_device_ids: restricts the devices this process uses, or ``None`` for all.
    """

    mode: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None


def _parse_int(value: object, *, name: str, source: str) -> int:
    if isinstance(value, bool):
        raise DistributedSettingsError(f"{name} from {source} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise DistributedSettingsError(
            f"{name} from {source} must be an integer, got {value!r}"
        ) from None


def _check_address(address: str, *, source: str) -> str:
    address = address.strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedSettingsError(
            f"coordinator address from {source} must look like host:port, got {address!r}"
        )
    return address


def tpu_vm_detected(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs on a Cloud TPU VM (or in a TPU container on GKE).

    Looks for the TPU environment variables that Cloud TPU sets, then for TPU devices
    (``/dev/accel*``, or a PCI device with the vendor and device id of a TPU chip).

    Args:
      environ: the environment to inspect (default `os.environ`).

    Returns:
      True when a TPU host is detected.
    """
    env = os.environ if environ is None else environ
    if any(env.get(k) for k in _TPU_ENV_VARS):
        return True
    if environ is not None:
        # An explicit environment is a full description: do not look at the machine.
        return False
    if glob.glob("/dev/accel[0-9]*"):
        return True
    for vendor_path in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor_path) as f:
                if f.read().strip() != _GOOGLE_PCI_VENDOR:
                    continue
            with open(os.path.join(os.path.dirname(vendor_path), "device")) as f:
                if f.read().strip() in _TPU_PCI_DEVICES:
                    return True
        except OSError:
            continue
    return False


def detect_settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    cluster: str = "auto",
    environ: Mapping[str, str] | None = None,
) -> DistributedSettings:
    """Decide how this process joins the run, without touching JAX.

    Arguments (for example from command-line flags) and the environment variables
    ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` are merged; a
    value given both ways must agree.

    Args:
      coordinator_address: ``host:port`` of process 0.
      num_processes: total number of processes.
      process_id: index of this process in ``[0, num_processes)``.
      local_device_ids: optional subset of local devices for this process.
      cluster: ``"auto"`` (explicit settings if any, else a TPU VM if detected, else a SLURM
        step or an Open MPI job of more than one process, else a single process), or force
        one of ``"single"``, ``"explicit"``, ``"tpu"``, ``"slurm"``, ``"ompi"``.
      environ: environment to read (default `os.environ`).

    Returns:
      The resolved `DistributedSettings`.

    Raises:
      DistributedSettingsError: unknown `cluster`, partial settings (e.g. a process id but no
        process count), values that contradict the environment, or a process id out of range.
    """
    if cluster not in _CLUSTERS:
        raise DistributedSettingsError(f"cluster must be one of {_CLUSTERS}, got {cluster!r}")
    env = os.environ if environ is None else environ

    merged: dict[str, object] = {}
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    env_names = {
        "coordinator_address": ENV_COORDINATOR_ADDRESS,
        "num_processes": ENV_NUM_PROCESSES,
        "process_id": ENV_PROCESS_ID,
    }
    for key, arg_value in given.items():
        env_raw = env.get(env_names[key])
        env_raw = env_raw if env_raw not in (None, "") else None
        if key == "coordinator_address":
            arg_v = None if arg_value is None else _check_address(str(arg_value), source="argument")
            env_v = None if env_raw is None else _check_address(env_raw, source=env_names[key])
        else:
            arg_v = (
                None if arg_value is None else _parse_int(arg_value, name=key, source="argument")
            )
            env_v = (
                None if env_raw is None else _parse_int(env_raw, name=key, source=env_names[key])
            )
        if arg_v is not None and env_v is not None and arg_v != env_v:
            raise DistributedSettingsError(
                f"{key}={arg_v!r} contradicts the environment variable "
                f"{env_names[key]}={env_v!r}; give one or make them agree"
            )
        merged[key] = arg_v if arg_v is not None else env_v

    present = [k for k, v in merged.items() if v is not None]
    ids = None if local_device_ids is None else tuple(int(i) for i in local_device_ids)

    if cluster == "single":
        if present:
            raise DistributedSettingsError(
                f"cluster='single' but multi-process settings are given: {', '.join(present)}"
            )
        return DistributedSettings(mode="single", local_device_ids=ids)

    if present or cluster == "explicit":
        missing = [k for k, v in merged.items() if v is None]
        if cluster in _MANAGED:
            # On TPU VMs and clusters JAX finds everything itself; explicit values are an
            # override of all three, never of a part.
            if missing:
                raise DistributedSettingsError(
                    f"cluster={cluster!r} with partial explicit settings: got "
                    f"{', '.join(present)} but not {', '.join(missing)}"
                )
        elif missing:
            raise DistributedSettingsError(
                "incomplete multi-process settings: got "
                f"{', '.join(present) or 'nothing'} but not {', '.join(missing)} "
                f"(set them as arguments or as {', '.join(env_names[k] for k in missing)})"
            )
        n = int(merged["num_processes"])  # type: ignore[arg-type]
        pid = int(merged["process_id"])  # type: ignore[arg-type]
        if n < 1:
            raise DistributedSettingsError(f"num_processes must be >= 1, got {n}")
        if not 0 <= pid < n:
            raise DistributedSettingsError(
                f"process_id must be in [0, num_processes={n}), got {pid}"
            )
        return DistributedSettings(
            mode="explicit",
            coordinator_address=str(merged["coordinator_address"]),
            num_processes=n,
            process_id=pid,
            local_device_ids=ids,
        )

    if cluster in ("slurm", "ompi"):
        return DistributedSettings(mode=cluster, local_device_ids=ids)
    if cluster == "tpu" or tpu_vm_detected(environ):
        return DistributedSettings(mode="tpu", local_device_ids=ids)
    managed = managed_cluster_detected(env)
    if managed is not None:
        return DistributedSettings(mode=managed, local_device_ids=ids)
    return DistributedSettings(mode="single", local_device_ids=ids)


def _int_env(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env.get(name, "") or 0)
    except ValueError:
        return 0


def managed_cluster_detected(environ: Mapping[str, str] | None = None) -> str | None:
    """``"slurm"`` or ``"ompi"`` when this process is one of several of a managed job.

    A SLURM job step (``srun``) with ``SLURM_NTASKS`` > 1 and the variables JAX's SLURM
    detection reads, or an Open MPI job (``mpirun``) with ``OMPI_COMM_WORLD_SIZE`` > 1;
    ``None`` otherwise (a single task of ``salloc`` or ``mpirun -n 1`` stays a single
    process).

    Args:
      environ: the environment to inspect (default `os.environ`).

    Returns:
      The cluster kind or ``None``.
    """
    env = os.environ if environ is None else environ
    if all(env.get(v) for v in _SLURM_VARS) and _int_env(env, "SLURM_NTASKS") > 1:
        return "slurm"
    if env.get(_OMPI_URI) and _int_env(env, "OMPI_COMM_WORLD_SIZE") > 1:
        return "ompi"
    return None


_lock = threading.Lock()
_active: DistributedSettings | None = None


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        return False


def _jax_distributed_client_exists() -> bool:
    try:
        from jax._src import distributed as _jd

        return _jd.global_state.client is not None
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        return False


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    cluster: str = "auto",
    initialization_timeout: int = 300,
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT,
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> DistributedSettings:
    """Join the run: detect the environment and initialise `jax.distributed` if needed.

    Call it once at the start of the program, before any JAX computation. It is idempotent:
    a second call with the same (or no new) settings returns the settings of the first.

    Args:
      coordinator_address: ``host:port`` of process 0 (or ``JAX_COORDINATOR_ADDRESS``).
      num_processes: total number of processes (or ``JAX_NUM_PROCESSES``).
      process_id: index of this process (or ``JAX_PROCESS_ID``).
      local_device_ids: optional subset of local devices for this process.
      cluster: ``"auto"``, ``"single"``, ``"explicit"`` or ``"tpu"`` (see `detect_settings`).
      initialization_timeout: seconds to wait for all processes to connect.
      heartbeat_timeout: seconds without heartbeats after which a process counts as dead and
        the coordination service stops every other process with an error naming it.
      shutdown_timeout: seconds the processes wait for each other when they exit normally.
      environ: environment to read (default `os.environ`).

    Returns:
      The `DistributedSettings` in effect, with ``num_processes`` and ``process_id`` filled in
      from JAX after initialisation.

    Raises:
      DistributedSettingsError: inconsistent settings, settings that differ from an earlier
        call, or a multi-process initialisation requested after JAX already started its
        backends in this process.
    """
    global _active
    settings = detect_settings(
        coordinator_address,
        num_processes,
        process_id,
        local_device_ids=local_device_ids,
        cluster=cluster,
        environ=environ,
    )
    with _lock:
        if _active is not None:
            if _same_request(settings, _active):
                return _active
            raise DistributedSettingsError(
                f"initialize() was already called with {_describe(_active)}; "
                f"it cannot be called again with {_describe(settings)}"
            )
        if settings.mode == "single":
            _active = dataclasses.replace(settings, num_processes=1, process_id=0)
            return _active
        if _jax_distributed_client_exists():
            # Somebody called jax.distributed.initialize directly: adopt it if it agrees.
            _active = _adopt(settings)
            return _active
        if _backends_initialized():
            raise DistributedSettingsError(
                f"initialize() for a {settings.mode!r} multi-process run must come before any "
                "JAX computation, but JAX's backends are already initialised in this process"
            )
        kwargs: dict[str, object] = {"initialization_timeout": int(initialization_timeout)}
        supported = inspect.signature(jax.distributed.initialize).parameters
        for name, value in (
            ("heartbeat_timeout_seconds", heartbeat_timeout),
            ("shutdown_timeout_seconds", shutdown_timeout),
        ):
            if name in supported:  # older JAX releases lack them
                kwargs[name] = int(value)
        if settings.mode in ("slurm", "ompi"):
            kwargs["cluster_detection_method"] = settings.mode
        if settings.local_device_ids is not None:
            kwargs["local_device_ids"] = list(settings.local_device_ids)
        if settings.mode == "explicit":
            kwargs.update(
                coordinator_address=settings.coordinator_address,
                num_processes=settings.num_processes,
                process_id=settings.process_id,
            )
        jax.distributed.initialize(**kwargs)
        _active = dataclasses.replace(
            settings, num_processes=jax.process_count(), process_id=jax.process_index()
        )
        return _active


def _same_request(new: DistributedSettings, old: DistributedSettings) -> bool:
    if new.mode == "single" and old.mode != "single":
        # A later call without settings (e.g. from a library) joins the existing run.
        return new.local_device_ids in (None, old.local_device_ids)
    if new.mode != old.mode:
        return False
    if new.mode in ("single", *_MANAGED):
        return new.local_device_ids in (None, old.local_device_ids)
    return (
        new.coordinator_address == old.coordinator_address
        and new.num_processes == old.num_processes
        and new.process_id == old.process_id
        and new.local_device_ids in (None, old.local_device_ids)
    )


def _adopt(settings: DistributedSettings) -> DistributedSettings:
    from jax._src import distributed as _jd

    state = _jd.global_state
    if settings.mode == "explicit" and (
        state.num_processes != settings.num_processes or state.process_id != settings.process_id
    ):
        raise DistributedSettingsError(
            "jax.distributed is already initialised with num_processes="
            f"{state.num_processes}, process_id={state.process_id}, which contradicts "
            f"{_describe(settings)}"
        )
    return dataclasses.replace(
        settings,
        coordinator_address=settings.coordinator_address or state.coordinator_address,
        num_processes=state.num_processes,
        process_id=state.process_id,
    )


def _describe(s: DistributedSettings) -> str:
    if s.mode == "explicit":
        return (
            f"explicit settings (coordinator_address={s.coordinator_address!r}, "
            f"num_processes={s.num_processes}, process_id={s.process_id})"
        )
    return f"mode {s.mode!r}"


def add_distributed_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--coordinator-address``, ``--num-processes``, ``--process-id`` and ``--cluster``.

    Pass the parsed namespace to `initialize_from_flags`. Flags left out fall back to the
    ``JAX_*`` environment variables; flags that contradict them are an error.

    Args:
      parser: the program's argument parser.

    Returns:
      The same parser.
    """
    group = parser.add_argument_group("multi-process run")
    group.add_argument("--coordinator-address", default=None, help="host:port of process 0")
    group.add_argument("--num-processes", type=int, default=None, help="number of processes")
    group.add_argument("--process-id", type=int, default=None, help="index of this process")
    group.add_argument("--cluster", choices=_CLUSTERS, default="auto", help="force a mode")
    return parser


def initialize_from_flags(args: argparse.Namespace) -> DistributedSettings:
    """`initialize()` with the flags of `add_distributed_flags`.

    Args:
      args: parsed arguments.

    Returns:
      The `DistributedSettings` in effect.
    """
    return initialize(
        args.coordinator_address, args.num_processes, args.process_id, cluster=args.cluster
    )


def is_initialized() -> bool:
    """Whether `initialize()` has run in this process."""
    return _active is not None


def process_index() -> int:
    """This process's index (`jax.process_index`)."""
    return jax.process_index()


def process_count() -> int:
    """Number of processes in the run (`jax.process_count`)."""
    return jax.process_count()
