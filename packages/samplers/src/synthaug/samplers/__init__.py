"""synthaug.samplers: Compiled DDPM (log-variance mix) and DDIM samplers, classifier-free guidance, thresholding and the cascade."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-samplers")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
