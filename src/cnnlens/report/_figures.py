"""The report's own figure layouts: sample rows of an error group, images x methods grids of maps (one colour bar
each), and the methods' agreement as a clustered heat map. Every figure fits the page (at most ``MAX_WIDTH``
inches at the report's 96 dpi) with type of at least 9 points."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..viz import LABEL_PT, TITLE_PT, add_colorbar, draw_view, map_colorbar  # noqa: E402
from ._notes import method_name  # noqa: E402

MAX_WIDTH = 11.5
SIGN, CMAP, ALPHA = "all", "RdBu_r", 0.6
"""How the report draws maps: signed (red = evidence for the explained class, blue = against, white = none),
blended over the image in gray."""


def _show(ax: plt.Axes, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class SampleRow:
    """One labelled row of `rows_figure`: images in [0, 1], each with its title."""

    label: str
    images: Sequence[np.ndarray]
    titles: Sequence[str]


def rows_figure(rows: Sequence[SampleRow], cell: float = 1.35) -> Figure:
    """One labelled row per `SampleRow`; empty rows say so."""
    cols = max([len(row.images) for row in rows] + [1])
    cell = min(cell, (MAX_WIDTH - 1.8) / cols)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols + 1.8, (cell + 0.35) * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(row.images):
                _show(ax, row.images[c])
                ax.set_title(row.titles[c], fontsize=LABEL_PT)
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(row.label, rotation=0, ha="right", va="center", fontsize=LABEL_PT)
        if not row.images:
            axes[r, 0].set_axis_on()
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=LABEL_PT, color="gray")
    fig.tight_layout()
    return fig


def _map(ax: plt.Axes, image: np.ndarray, attribution: np.ndarray, title: str | None = None) -> None:
    """The signed map blended over the image in gray (resized to it), tagged as a map."""
    draw_view(ax, image, attribution, "blended_heat_map", sign=SIGN, cmap=CMAP, alpha=ALPHA, title=title)


def maps_grid(
    images: Sequence[np.ndarray],
    row_titles: Sequence[str],
    maps: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    cell: float = 1.7,
) -> Figure:
    """Rows = images (first column the image), columns = methods: each map, signed, over the image; one colour
    bar for all. ``maps``: per method, one map per image (a stacked array or a sequence)."""
    methods = list(maps)
    cols = 1 + len(methods)
    cell = min(cell, (MAX_WIDTH - 1.2) / cols)
    fig, axes = plt.subplots(
        len(images), cols, figsize=(cell * cols + 1.2, (cell + 0.45) * len(images) + 0.2), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for r, image in enumerate(images):
        _show(axes[r, 0], image)
        axes[r, 0].set_title(row_titles[r], fontsize=LABEL_PT)
        for c, m in enumerate(methods, start=1):
            _map(axes[r, c], image, maps[m][r], _short(method_name(m), 20) if r == 0 else None)
    map_colorbar(fig, list(axes[:, 1:].ravel()), "blended_heat_map", SIGN, CMAP)
    return fig


def photo_grid(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    top: Sequence[tuple[str, float]],
    title: str = "",
    columns: int = 6,
) -> Figure:
    """The photo titled with its top class, then every method's map (signed, over the photo) in a grid with one
    colour bar."""
    n = 1 + len(maps)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    cell = min(1.75, (MAX_WIDTH - 1.2) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 1.2, (cell + 0.4) * rows + 0.3), squeeze=False,
                             layout="constrained")  # fmt: skip
    flat = list(axes.flat)
    _show(flat[0], image)
    heading = title
    if top:
        label, probability = top[0]
        heading = f"{title}: {label} {probability:.0%}"
    flat[0].set_title(_short(heading, 24), fontsize=LABEL_PT)
    for ax, (m, a) in zip(flat[1:], maps.items(), strict=False):
        _map(ax, image, a, _short(method_name(m), 20))
    for ax in flat[n:]:
        ax.set_axis_off()
    if maps:
        map_colorbar(fig, flat[1:n], "blended_heat_map", SIGN, CMAP)
    return fig


def cluster_order(similarity: np.ndarray) -> list[int]:
    """Order of the rows of a symmetric similarity matrix (values in [0, 1]) that puts similar rows together:
    the leaves of an average-linkage clustering (SciPy) of the distances ``1 - similarity``."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = similarity.shape[0]
    if n <= 2:
        return list(range(n))
    distance = np.clip(1.0 - (similarity + similarity.T) / 2.0, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    return [int(i) for i in leaves_list(linkage(squareform(distance, checks=False), method="average"))]


def agreement_figure(methods: Sequence[str], overlaps: Mapping[tuple[str, str], float], fraction: float) -> Figure:
    """The share of top pixels every two methods have in common, as a heat map whose rows and columns are ordered
    by clustering (methods that agree sit together); the numbers are printed for up to 16 methods."""
    names = list(methods)
    n = len(names)
    sim = np.eye(n)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                sim[i, j] = overlaps.get((a, b), overlaps.get((b, a), np.nan))
    order = cluster_order(np.nan_to_num(sim, nan=0.0))
    sim = sim[np.ix_(order, order)]
    labels = [_short(method_name(names[k]), 20) for k in order]
    side = min(MAX_WIDTH - 2.6, max(4.0, 0.3 * n + 1.0))
    fig, ax = plt.subplots(figsize=(side + 2.6, side + 1.2), layout="constrained")
    ax.imshow(sim, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=LABEL_PT)
    ax.set_yticks(range(n), labels, fontsize=LABEL_PT)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if i != j and not np.isnan(sim[i, j]):
                    ax.text(j, i, f"{100 * sim[i, j]:.0f}", ha="center", va="center", fontsize=LABEL_PT,
                            color="black" if sim[i, j] > 0.6 else "white")  # fmt: skip
    add_colorbar(fig, ax, "viridis", 0.0, 1.0, f"share of the top {fraction:.0%} pixels in common "
                 f"(chance: {fraction:.0%})", {0.0: "0", fraction: "chance", 1.0: "all"})  # fmt: skip
    ax.set_title("Which methods point at the same pixels (similar methods are grouped)", fontsize=TITLE_PT)
    return fig
