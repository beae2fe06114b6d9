"""Reports that travel with a data source: what was read, what was skipped and why."""

from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass
class DataReport:
    """Metadata of one source and the record of the examples it skipped.

    Sources fill the static fields when the dataset is built; ``skipped`` grows while the
    dataset is iterated (each corrupt file is recorded once, however many epochs are read).

    Attributes:
      source: ``"folders"``, ``"tfrecords"``, ``"tfds"`` or ``"synthetic"``.
      split: the split that was read (``""`` where the source has none).
      location: the directory, file pattern or TFDS data_dir.
      num_examples: examples in this host's share before skipping (None if unknown).
      num_classes: number of classes of the label space.
      files: number of image files or record shards in this host's share.
      skipped: name of each skipped example -> reason.
    """

    source: str = ""
    split: str = ""
    location: str = ""
    num_examples: int | None = None
    num_classes: int | None = None
    files: int | None = None
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def record_skip(self, name: str, reason: str) -> None:
        """Record that example ``name`` was skipped because of ``reason``."""
        with self._lock:
            self.skipped.setdefault(name, reason)

    @property
    def num_skipped(self) -> int:
        """How many distinct examples were skipped so far."""
        with self._lock:
            return len(self.skipped)

    def summary(self) -> str:
        """A human-readable summary (one line, plus one line per skipped example)."""
        with self._lock:
            items = sorted(self.skipped.items())
        head = (
            f"{self.source}:{self.split or '-'} at {self.location}: "
            f"{self.num_examples if self.num_examples is not None else '?'} examples, "
            f"{len(items)} skipped"
        )
        return "\n".join([head] + [f"  skipped {name}: {why}" for name, why in items])

    def as_dict(self) -> dict:
        """A JSON-serialisable copy."""
        with self._lock:
            skipped = dict(sorted(self.skipped.items()))
        return {
            "source": self.source,
            "split": self.split,
            "location": self.location,
            "num_examples": self.num_examples,
            "num_classes": self.num_classes,
            "files": self.files,
            "skipped": skipped,
        }
