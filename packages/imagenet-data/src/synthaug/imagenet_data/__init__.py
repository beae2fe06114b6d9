"""synthaug.imagenet_data: ImageNet readers on tf.data, the paper's preprocessing, synthetic shards, real+synthetic mixing and the demo data."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-imagenet-data")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
