"""synthaug.metrics: FID Inception-v3 features, exact Fréchet distance, Inception Score, precision/recall and CAS."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-metrics")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
