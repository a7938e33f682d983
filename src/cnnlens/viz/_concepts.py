"""Concept figures: a class's concept gallery (typical crops and importance bars) and one image in concepts.

Both take the results of ``cnnlens.concepts`` (``Concepts``, ``ImageConcepts``, ``ErrorConcepts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ._legend import LABEL_PT, TITLE_PT, add_colorbar, tag_map  # noqa: E402
from ._views import blended_heat_map, default_cmap, original_image  # noqa: E402

if TYPE_CHECKING:
    import torch

    from ..concepts import Concepts, ErrorConcepts, ImageConcepts

COLOURS = plt.get_cmap("tab10")
MAP_WORDS = "how much of the concept is here\n(share of its top 1% in the image)"


def _concept_map(ax: Axes, image: np.ndarray, values: np.ndarray) -> None:
    """The concept's map blended over the image (positive part, 99th-percentile scaled), tagged as a map."""
    tag_map(ax.imshow(blended_heat_map(image, values, sign="positive", alpha=0.55)))


def _map_bar(fig: Figure, axes: list[Axes]) -> None:
    add_colorbar(fig, axes, default_cmap("positive"), 0.0, 1.0, MAP_WORDS, {0.0: "none", 1.0: "most"})


def _pixels(concepts: Concepts, x: torch.Tensor) -> np.ndarray:
    return original_image(concepts.pixels(x)[0])


def concept_gallery_figure(concepts: Concepts, crops: int = 6, top: int | None = None) -> Figure:
    """One row per concept (most important first): its importance bar, the class image where it is strongest with
    its map, and its ``crops`` most typical crops. ``top``: show only the first concepts."""
    if crops < 1:
        raise CnnlensError(f"crops must be at least 1; got {crops}")
    k = concepts.n_concepts if top is None else max(1, min(int(top), concepts.n_concepts))
    t = min(int(crops), concepts.typical.shape[1])
    fig = plt.figure(figsize=(3.0 + 1.4 * (t + 1), 1.5 * k + 0.8))
    grid = fig.add_gridspec(k, t + 2, width_ratios=[2.2] + [1.0] * (t + 1), wspace=0.08, hspace=0.45)
    peaks = concepts.coefficients.max(axis=(1, 2))  # (n, k)
    pictures: list[Axes] = []  # every image axes: the colour bar goes to the right of them all
    high = float(concepts.importance.max()) or 1.0
    for c in range(k):
        bar = fig.add_subplot(grid[c, 0])
        bar.barh([0], [concepts.importance[c]], color=COLOURS(c % 10))
        bar.set_xlim(0, high * 1.05)
        bar.set_yticks([])
        bar.set_title(f"concept {c}: {concepts.importance[c]:.2f}", fontsize=LABEL_PT, loc="left")
        bar.tick_params(labelsize=LABEL_PT)
        if c < k - 1:
            bar.set_xticklabels([])
        i = int(peaks[:, c].argmax())
        ax = fig.add_subplot(grid[c, 1])
        image = _pixels(concepts, concepts.inputs[i])
        _concept_map(ax, image, concepts.maps(i)[c])
        ax.set_axis_off()
        pictures.append(ax)
        if c == 0:
            ax.set_title("strongest in", fontsize=LABEL_PT)
        for j in range(t):
            ax = fig.add_subplot(grid[c, j + 2])
            ax.imshow(_pixels(concepts, concepts.crop(int(concepts.typical[c, j]))))
            ax.set_axis_off()
            pictures.append(ax)
            if c == 0 and j == 0:
                ax.set_title("typical crops", fontsize=LABEL_PT, loc="left")
    _map_bar(fig, pictures)
    fig.suptitle(
        f"What the model looks for in class {concepts.class_name} (layer {concepts.layer}; bars: Sobol importance; "
        f"fidelity {concepts.fidelity:.2f})",
        fontsize=TITLE_PT,
    )
    return fig


def concept_overlay_figure(result: ImageConcepts, top: int = 4) -> Figure:
    """One image in a class's concepts: the image, the map of each of the ``top`` contributing concepts, and a bar
    per concept (its contribution to the class score; hatched: not present in the image)."""
    concepts = result.concepts
    order = np.argsort(-result.contributions, kind="stable")[: max(1, int(top))]
    image = _pixels(concepts, result.input)
    fig, axes = plt.subplots(1, len(order) + 2, figsize=(2.4 * (len(order) + 2) + 2.0, 3.0))
    axes[0].imshow(image)
    axes[0].set_title(f"class {concepts.class_name}\nscore {result.score:.2f}", fontsize=LABEL_PT)
    for ax, c in zip(axes[1:-1], order, strict=True):
        _concept_map(ax, image, result.maps[c])
        ax.set_title(f"concept {c}\npresence {result.presence[c]:.2f}", fontsize=LABEL_PT)
    for ax in axes[:-1]:
        ax.set_axis_off()
    _contribution_bars(axes[-1], result)
    fig.tight_layout()
    _map_bar(fig, list(axes[1:-1]))
    return fig


def _contribution_bars(ax: Axes, result: ImageConcepts) -> None:
    k = len(result.contributions)
    present = result.presence >= 0.5
    bars = ax.barh(np.arange(k), result.contributions, color=[COLOURS(c % 10) for c in range(k)])
    for c, b in enumerate(bars):
        if not present[c]:
            b.set_hatch("///")
            b.set_alpha(0.5)
    ax.set_yticks(np.arange(k), [f"concept {c}" for c in range(k)], fontsize=LABEL_PT)
    ax.invert_yaxis()
    ax.set_xlabel("contribution (Sobol)", fontsize=LABEL_PT)
    ax.tick_params(labelsize=LABEL_PT)


def error_concepts_figure(error: ErrorConcepts, top: int = 3) -> Figure:
    """An error in concepts: the wrong class's concepts the image shows (with their maps) and the true class's
    concepts it lacks (with a class image where each is strong)."""
    shown, lacked = list(error.shown[:top]), list(error.lacked[:top])
    cols = max(1, len(shown), len(lacked)) + 1
    fig, axes = plt.subplots(2, cols, figsize=(2.4 * cols + 1.5, 5.2), squeeze=False)
    maps = []
    wrong, true = error.predicted, error.true
    image = _pixels(wrong.concepts, wrong.input)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(f"taken for {wrong.concepts.class_name}", fontsize=LABEL_PT)
    axes[1, 0].imshow(image)
    axes[1, 0].set_title(f"true class {true.concepts.class_name}", fontsize=LABEL_PT)
    for j, c in enumerate(shown):
        _concept_map(axes[0, j + 1], image, wrong.maps[c])
        axes[0, j + 1].set_title(f"shows {wrong.concepts.class_name}'s\nconcept {c}", fontsize=LABEL_PT)
        maps.append(axes[0, j + 1])
    peaks = true.concepts.coefficients.max(axis=(1, 2))
    for j, c in enumerate(lacked):
        i = int(peaks[:, c].argmax())
        other = _pixels(true.concepts, true.concepts.inputs[i])
        _concept_map(axes[1, j + 1], other, true.concepts.maps(i)[c])
        axes[1, j + 1].set_title(f"lacks {true.concepts.class_name}'s\nconcept {c} (as here)", fontsize=LABEL_PT)
        maps.append(axes[1, j + 1])
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    if maps:
        _map_bar(fig, maps)
    return fig
