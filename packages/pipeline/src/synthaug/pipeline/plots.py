"""Figures for reports: sample grids and metric-versus-setting plots (PNG, atomic)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from synthaug.pipeline.io import atomic_path

__all__ = ["image_grid", "plot_vs_guidance", "plot_vs_size", "save_grid_png"]


def image_grid(images: np.ndarray, *, cols: int, pad: int = 1) -> np.ndarray:
    """Tile ``images`` [N, H, W, C] (uint8) into one [rows*(H+pad)+pad, ...] image."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    rows = max(1, -(-n // cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def save_grid_png(
    path: str | os.PathLike, images: np.ndarray, *, cols: int, scale: int = 4
) -> pathlib.Path:
    """Write ``images`` (uint8 [N, H, W, C], C in {1, 3}) as one grid PNG, upscaled ``scale``×."""
    from PIL import Image

    grid = image_grid(images, cols=cols)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return pathlib.Path(path)


def _value_err(v) -> tuple[float, float]:
    if isinstance(v, tuple | list):
        if len(v) != 2:
            raise ValueError(f"a point is a value or a (value, error) pair, got {v!r}")
        return float(v[0]), float(v[1])
    return float(v), 0.0


def plot_vs_guidance(
    path: str | os.PathLike,
    guidance: Sequence[float],
    series: Mapping[str, Sequence[float | tuple[float, float]]],
    *,
    title: str,
) -> pathlib.Path:
    """One panel per series (e.g. CAS and Fréchet distance) against guidance weight, as PNG.

    A point is a value or a ``(value, error)`` pair, drawn with an error bar of ± error.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4))
    axes = np.atleast_1d(axes)
    for ax, (name, ys) in zip(axes, series.items(), strict=True):
        pts = [_value_err(v) for v in ys]
        ax.errorbar(
            list(guidance), [p[0] for p in pts], yerr=[p[1] for p in pts], marker="o", capsize=3
        )
        ax.set_xlabel("guidance weight w (1 = no guidance)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return pathlib.Path(path)


def plot_vs_size(
    path: str | os.PathLike,
    sizes: Sequence[int],
    means: Sequence[float],
    errors: Sequence[float],
    *,
    title: str,
    reference: float | None = None,
    ylabel: str = "top-1 on the real test split (%)",
) -> pathlib.Path:
    """Accuracy against training-set size with ± ``errors`` bars, as PNG; ``reference`` (e.g.
    the all-real-data classifier) as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not (len(sizes) == len(means) == len(errors)):
        raise ValueError(
            f"sizes, means and errors differ in length: {len(sizes)}, {len(means)}, {len(errors)}"
        )
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.errorbar(list(sizes), list(means), yerr=list(errors), marker="o", capsize=3)
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle="--", label="all real train images")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("training images (real subset + synthetic)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return pathlib.Path(path)
