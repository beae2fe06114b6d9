"""synthaug.pipeline: The thin orchestration: stages, experiment configs and the `synthaug` command line."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-pipeline")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
