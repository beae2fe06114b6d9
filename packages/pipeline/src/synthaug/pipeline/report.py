"""Markdown reports: tables of metrics and links to figures, written atomically."""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from synthaug.pipeline.io import write_text

__all__ = ["MarkdownReport", "format_value", "markdown_table"]


def format_value(v: Any, digits: int = 4) -> str:
    """A table cell: floats rounded to ``digits`` significant digits, None as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}" if abs(v) < 10 ** (digits + 1) else f"{v:.0f}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"table row {list(r)!r} has {len(r)} cells, header has {len(header)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(format_value(c) for c in r) + " |")
    return "\n".join(lines) + "\n"


class MarkdownReport:
    """Collects sections and writes one Markdown file; figure paths are made relative.

    Args:
      path: the Markdown file to write.
      title: the top-level heading.
    """

    def __init__(self, path: str | os.PathLike, title: str):
        self.path = pathlib.Path(path)
        self.parts: list[str] = [f"# {title}\n"]

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"{'#' * level} {text}\n")

    def paragraph(self, text: str) -> None:
        self.parts.append(text.strip() + "\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.parts.append(markdown_table(header, rows))

    def kv_table(self, values: Mapping[str, Any], header: Sequence[str] = ("", "")) -> None:
        self.table(header, [(k, v) for k, v in values.items()])

    def figure(self, image: str | os.PathLike, caption: str) -> None:
        p = pathlib.Path(image)
        try:
            rel = p.resolve().relative_to(self.path.parent.resolve())
        except ValueError:
            rel = p
        self.parts.append(f"![{caption}]({rel.as_posix()})\n\n*{caption}*\n")

    def text(self) -> str:
        return "\n".join(self.parts)

    def write(self) -> pathlib.Path:
        return write_text(self.path, self.text())
