"""synthaug.classifiers: ResNet, ViT and DeiT in Flax, the paper's training recipes, data-parallel training and exact evaluation."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-classifiers")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
