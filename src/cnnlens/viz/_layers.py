"""Figures for looking inside: conv filters, feature maps (chosen by activation) and the same channels compared
across images. Every grid has a colour bar saying what its colours mean, and type of at least 9 points."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ._legend import LABEL_PT, TITLE_PT, add_colorbar, tag_map  # noqa: E402

ORDERS = ("index", "activation")


def _as_array(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.float().numpy() if value.dtype in (torch.float16, torch.bfloat16) else value.numpy()
    return np.asarray(value)


def _tiles(
    tiles: np.ndarray, draw: Callable[[Axes, np.ndarray], object], cell: float, title: str, labels: Sequence[str]
) -> tuple[Figure, list[Axes]]:
    """A near-square grid with one labelled axes per tile, drawn by ``draw(ax, tile)``; spare axes left blank.
    Returns the figure and the axes that hold a tile."""
    if not len(tiles):
        raise CnnlensError(f"Nothing to draw for {title!r}: no filters or channels (or a limit below 1).")
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    cell = min(cell, 9.5 / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(cell * cols + 1.6, (cell + 0.3) * rows + 0.5), squeeze=False, layout="constrained"
    )
    used = []
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(tiles):
            draw(ax, tiles[k])
            ax.set_title(labels[k], fontsize=LABEL_PT)
            used.append(ax)
    fig.suptitle(title, fontsize=TITLE_PT)
    return fig, used


def _draw_filter(ax: Axes, f: np.ndarray) -> None:
    if f.shape[0] == 3:
        lo, hi = f.min(), f.max()
        ax.imshow(((f - lo) / (hi - lo + 1e-12)).transpose(1, 2, 0))
    else:
        m = f.mean(0)
        lim = np.abs(m).max() + 1e-12
        ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)


def filters_figure(weights: torch.Tensor | np.ndarray, max_filters: int = 64, title: str = "") -> Figure:
    """Conv weights ``(out, in, kh, kw)`` as a grid: RGB when ``in == 3`` (what colour and edge each first-layer
    filter looks for), else the mean over input channels in blue (negative) to red (positive), with a colour
    bar; each filter scaled to its own range. ``1 x 1`` convolutions have no spatial pattern: they are drawn as
    one ``(out, in)`` matrix of weights (how each output channel mixes the input channels)."""
    w = _as_array(weights)
    if w.ndim != 4:
        raise CnnlensError(f"Expected conv weights of shape (out, in, kh, kw); got {w.shape}.")
    if w.shape[2:] == (1, 1) and w.size:
        return _mixing_figure(w[:, :, 0, 0], title)
    w = w[:max_filters]
    cell = 0.8 if w.shape[2] * w.shape[3] <= 9 else 1.1  # a 3 x 3 filter has nothing to show at a larger size
    fig, used = _tiles(w, _draw_filter, cell, title or f"{len(w)} filters", [str(k) for k in range(len(w))])
    if w.shape[1] != 3:
        add_colorbar(fig, used, "RdBu_r", -1.0, 1.0, "weight (each filter scaled to its own range)",
                     {-1.0: "negative", 0.0: "0", 1.0: "positive"})  # fmt: skip
    return fig


def _mixing_figure(matrix: np.ndarray, title: str) -> Figure:
    out, inp = matrix.shape
    lim = float(np.abs(matrix).max()) or 1.0
    fig, ax = plt.subplots(figsize=(min(9.0, 2.5 + 0.05 * inp), min(9.0, 2.0 + 0.05 * out)), layout="constrained")
    ax.imshow(matrix, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_xlabel(f"input channel ({inp})", fontsize=LABEL_PT)
    ax.set_ylabel(f"output channel ({out})", fontsize=LABEL_PT)
    ax.tick_params(labelsize=LABEL_PT)
    add_colorbar(fig, ax, "RdBu_r", -lim, lim, "weight")
    ax.set_title(title or "1 x 1 convolution: how each output channel mixes the inputs", fontsize=TITLE_PT)
    return fig


def channel_order(maps: np.ndarray, order: str = "activation") -> list[int]:
    """Channel indices of ``(C, H, W)`` maps: ``index`` order, or by mean activation, highest first (ties by
    index)."""
    if order not in ORDERS:
        raise CnnlensError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if order == "index":
        return list(range(maps.shape[0]))
    means = maps.reshape(maps.shape[0], -1).mean(1)
    return [int(c) for c in np.lexsort((np.arange(len(means)), -means))]


def feature_maps_figure(
    maps: torch.Tensor | np.ndarray, max_maps: int = 32, title: str = "", cmap: str = "viridis", order: str = "index"
) -> Figure:
    """One image's feature maps ``(C, H, W)`` (or ``(1, C, H, W)``) as a grid: the first ``max_maps`` channels
    (``order="index"``) or the ``max_maps`` most active ones (``order="activation"``, by mean activation),
    each titled with its channel number and on its own scale, with a colour bar."""
    m = _as_array(maps)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise CnnlensError(f"Expected one image's feature maps (C, H, W); got shape {m.shape}.")
    chosen = channel_order(m, order)[: max(0, int(max_maps))]
    what = "most active " if order == "activation" else ""
    fig, used = _tiles(m[chosen], lambda ax, channel: tag_map(ax.imshow(channel, cmap=cmap)), 1.2,
                       title or f"{len(chosen)} {what}feature maps", [f"ch {c}" for c in chosen])  # fmt: skip
    add_colorbar(fig, used, cmap, 0.0, 1.0, "response, each channel scaled to its own range",
                 {0.0: "its lowest", 1.0: "its highest"})  # fmt: skip
    return fig


def channels_figure(
    maps: Mapping[str, torch.Tensor | np.ndarray], channels: Sequence[int], title: str = "", cmap: str = "viridis"
) -> Figure:
    """The same ``channels`` of one layer for several images (``maps``: row label -> ``(C, H, W)``): rows =
    images, columns = channels, each column on one scale for all rows (0 to the channel's strongest response in
    these images), so the rows can be compared; one colour bar."""
    rows = {k: _as_array(v)[0] if _as_array(v).ndim == 4 else _as_array(v) for k, v in maps.items()}
    if not rows or not len(channels):
        raise CnnlensError("channels_figure needs at least one image and one channel")
    cols = len(channels)
    cell = min(1.3, 9.0 / cols)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols + 2.6, (cell + 0.3) * len(rows) + 0.6),
                             squeeze=False, layout="constrained")  # fmt: skip
    for j, c in enumerate(channels):
        top = max(float(np.abs(m[c]).max()) for m in rows.values()) or 1.0
        for i, (label, m) in enumerate(rows.items()):
            ax = axes[i, j]
            tag_map(ax.imshow(m[c] / top, cmap=cmap, vmin=0.0 if m[c].min() >= 0 else -1.0, vmax=1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"ch {c}", fontsize=LABEL_PT)
            if j == 0:
                ax.set_ylabel(label, fontsize=LABEL_PT, rotation=0, ha="right", va="center")
    add_colorbar(fig, list(axes.ravel()), cmap, 0.0, 1.0, "response, share of the channel's strongest here",
                 {0.0: "none", 1.0: "strongest"})  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=TITLE_PT)
    return fig
