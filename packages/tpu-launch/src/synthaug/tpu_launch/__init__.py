"""synthaug.tpu_launch: Multi-host JAX initialisation, device meshes, sharding rules and launchers for TPU pods and local multi-process runs."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-tpu-launch")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
