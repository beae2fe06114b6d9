"""synthaug.diffusion_core: Imagen U-Nets, continuous-time noise schedules, the diffusion loss and resumable training state."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-diffusion-core")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
