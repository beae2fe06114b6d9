"""synthaug.text_encoder: The T5 v1.1 encoder in Flax, SentencePiece tokenisation, checkpoint import and a class-prompt embedding cache."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("synthaug-text-encoder")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
