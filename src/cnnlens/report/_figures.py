"""The report's own figure layouts: sample rows of an error group, and images x methods grids of heat maps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..viz import to_heatmap  # noqa: E402
from ._notes import method_name  # noqa: E402


def _show(ax: plt.Axes, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay(ax: plt.Axes, image: np.ndarray, attribution: np.ndarray, cmap: str, alpha: float) -> None:
    """The map's absolute evidence (`to_heatmap`, resized to the image) over the image in gray."""
    ax.imshow(image if image.ndim == 2 else image.mean(axis=2), cmap="gray", vmin=0, vmax=1)
    ax.imshow(to_heatmap(attribution, size=image.shape[:2]), cmap=cmap, vmin=0, vmax=1, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])


def rows_figure(rows: Sequence[tuple[str, Sequence[np.ndarray], Sequence[str]]], cell: float = 1.3) -> Figure:
    """One labelled row per ``(label, images in [0, 1], titles)``; empty rows say so."""
    cols = max([len(images) for _, images, _ in rows] + [1])
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols + 1.6, cell * 1.15 * len(rows)), squeeze=False)
    for r, (label, images, titles) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(images):
                _show(ax, images[c])
                ax.set_title(titles[c], fontsize=7)
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        if not images:
            axes[r, 0].set_axis_on()
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=8, color="gray")
    fig.tight_layout()
    return fig


def maps_grid(
    images: Sequence[np.ndarray],
    row_titles: Sequence[str],
    maps: Mapping[str, Sequence[np.ndarray]],
    cell: float = 1.5,
    cmap: str = "inferno",
    alpha: float = 0.6,
) -> Figure:
    """Rows = images (first column the image), columns = methods: each map's absolute evidence over the image."""
    methods = list(maps)
    fig, axes = plt.subplots(
        len(images), 1 + len(methods), figsize=(cell * (1 + len(methods)), cell * 1.2 * len(images)), squeeze=False
    )
    for r, image in enumerate(images):
        _show(axes[r, 0], image)
        axes[r, 0].set_title(row_titles[r], fontsize=7)
        for c, m in enumerate(methods, start=1):
            _overlay(axes[r, c], image, maps[m][r], cmap, alpha)
            if r == 0:
                axes[r, c].set_title(method_name(m), fontsize=8)
    fig.tight_layout()
    return fig


def photo_grid(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    top: Sequence[tuple[str, float]],
    title: str = "",
    columns: int = 6,
    cmap: str = "inferno",
    alpha: float = 0.6,
) -> Figure:
    """The photo titled with its top class, then every method's map (absolute evidence) in a grid."""
    n = 1 + len(maps)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows + 0.6), squeeze=False)
    flat = list(axes.flat)
    _show(flat[0], image)
    flat[0].set_title(f"{title}: {top[0][0][:24]} {top[0][1]:.0%}" if top else title, fontsize=8)
    for ax, (m, a) in zip(flat[1:], maps.items(), strict=False):
        _overlay(ax, image, a, cmap, alpha)
        ax.set_title(method_name(m), fontsize=8)
    for ax in flat[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig
