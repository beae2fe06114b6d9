"""Errors raised by synthaug.text_encoder (all are subclasses of ValueError)."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint does not hold the tensors a T5 v1.1 encoder needs.

    Attributes:
      missing: expected tensor names that the checkpoint lacks.
      unexpected: tensor names in the checkpoint that the importer does not know.
    """

    def __init__(self, message: str, *, missing=(), unexpected=()):
        super().__init__(message)
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)


class StaleCacheError(ValueError):
    """A prompt-embedding cache on disk was made for another checkpoint/template/length."""
