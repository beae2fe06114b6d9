"""The error every synthaug reader of a foreign weights file raises on a bad file."""

from __future__ import annotations

__all__ = ["WeightsFileError"]


class WeightsFileError(ValueError):
    """A weights file that is damaged, of another format, or not safe to load.

    The message is one line that starts with the file's path.
    """
