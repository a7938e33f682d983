"""Panels and grids: an image with several methods' maps, its top classes and its labels; images x methods."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, SupportsFloat, TypeAlias

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import Colormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ._legend import LABEL_PT, TITLE_PT  # noqa: E402
from ._maps import as_image  # noqa: E402
from ._views import draw_view, map_colorbar, view_name  # noqa: E402

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

RIGHT, WRONG = "#1a7f37", "#c62828"
TopClass: TypeAlias = "tuple[str, SupportsFloat] | tuple[int, str, SupportsFloat]"
"""A ``(class_name, probability)`` pair or a ``Classifier.predict`` row ``(index, name, probability)``."""


def explanation_panel(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    top_classes: Sequence[tuple[str, float]] = (),
    title: str = "",
    sign: str = "absolute",
    cmap: str = "inferno",
    alpha: float = 0.55,
) -> Figure:
    """``image`` (H, W, 3) in [0, 1]; ``maps`` method name -> attribution (C, H, W) or (H, W).

    One row: the image with its top classes, then one blended heat map per method (absolute evidence by
    default: bright = pixels that move the explained score most) and one colour bar for them all. ``RdBu_r`` is
    used for ``sign="all"``.
    """
    n = 1 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=_fit(3.0 * n + 0.8, 3.6), squeeze=False, layout="constrained")
    ax = axes[0]
    draw_view(ax[0], image, view="original_image", title=title)
    lines = "\n".join(f"{p:6.1%}  {name}" for name, p in top_classes)
    ax[0].text(0.0, -0.03, lines, transform=ax[0].transAxes, va="top", ha="left", fontsize=LABEL_PT,
               family="monospace")  # fmt: skip
    cmap = "RdBu_r" if sign == "all" else cmap
    for a, (name, attribution) in zip(ax[1:], maps.items(), strict=True):
        draw_view(a, image, attribution, "blended_heat_map", sign=sign, cmap=cmap, alpha=alpha, title=str(name))
    if maps:
        map_colorbar(fig, list(ax[1:]), "blended_heat_map", sign, cmap)
    return fig


MAX_WIDTH = 11.5
"""Widest figure (inches) the panels make: at the report's 96 dpi it fits the report's column at full size, so its
type stays at the size it was set in."""


def _fit(width: float, height: float) -> tuple[float, float]:
    """(width, height) scaled down, keeping the aspect, to at most ``MAX_WIDTH`` inches wide."""
    k = min(1.0, MAX_WIDTH / width)
    return width * k, height * k


def _short(name: str, limit: int = 26) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _top_k(top_k: Sequence[TopClass]) -> list[tuple[str, float]]:
    rows = []
    for entry in top_k:
        if len(entry) not in (2, 3):
            raise CnnlensError(
                f"top_k entries are (class_name, probability) or Classifier.predict's (index, name, probability); "
                f"got {entry!r}"
            )
        name, p = str(entry[-2]), float(entry[-1])
        if not 0.0 <= p <= 1.0:
            raise CnnlensError(f"probability of {name!r} must be in [0, 1]; got {p}")
        rows.append((name, p))
    return sorted(rows, key=lambda r: -r[1])


def _labels_title(title: str, true_label: str | None, predicted_label: str | None) -> tuple[str, str]:
    parts = [title] if title else []
    if true_label is not None:
        parts.append(f"true: {true_label}")
    if predicted_label is not None:
        parts.append(f"predicted: {predicted_label}")
    if true_label is None or predicted_label is None:
        color = "black"
    else:
        color = RIGHT if str(true_label) == str(predicted_label) else WRONG
    return "   ".join(parts), color


def compare_panel(
    image: ArrayLike,
    maps: Mapping[str, ArrayLike],
    top_k: Sequence[TopClass] = (),
    true_label: str | None = None,
    predicted_label: str | None = None,
    sign: str = "absolute",
    view: str = "blended",
    cmap: str | Colormap | None = None,
    title: str = "",
    alpha: float = 0.5,
    percentile: float | None = 99.0,
    reduce: str = "sum",
    colorbar: bool = True,
    columns: int = 4,
) -> Figure:
    """One image explained by several methods: the image at full resolution (large, left) above a horizontal
    bar chart of the ``top_k`` ``(class_name, probability)`` pairs or ``Classifier.predict`` rows ``(index, name,
    probability)`` (the true class in green, the others gray); one ``view`` of each method's map (``maps``:
    method name -> attribution) in rows of at most ``columns``, with one colour bar that says what the colours
    mean (``colorbar=False`` leaves it out); a title with the true and predicted labels (green if they agree, red
    if not). ``predicted_label`` defaults to the most probable ``top_k`` class. Maps are resized to the image (a
    CAM at layer resolution too), so pass the image the model saw (``classifier.preprocessing.to_pixels(x)[i]``)
    or one with the same framing. The figure is at most ``MAX_WIDTH`` inches wide, with type of 9 points or more.
    """
    img = as_image(image)
    view = view_name(view)
    if not maps:
        raise CnnlensError("maps is empty: pass {method name: attribution} for at least one method")
    if int(columns) < 1:
        raise CnnlensError(f"columns must be at least 1; got {columns}")
    bars = _top_k(top_k)
    if predicted_label is None and bars:
        predicted_label = bars[0][0]
    n = len(maps)
    cols = min(n, int(columns))
    rows = math.ceil(n / cols)
    side = 3.4
    cell = min(2.2, (MAX_WIDTH - side - 1.6) / cols)
    bars_height = 0.32 * len(bars) + 0.7 if bars else 0.0
    height = max(rows * (cell + 0.3), side + bars_height) + 0.5
    fig = plt.figure(figsize=(side + 0.4 + cols * cell + 1.0, height), layout="constrained")
    outer = fig.add_gridspec(1, 2, width_ratios=[side + 0.4, cols * cell])
    left = outer[0].subgridspec(2, 1, height_ratios=[side, max(bars_height, 0.01)])
    right = outer[1].subgridspec(rows, cols)
    main = fig.add_subplot(left[0])
    draw_view(main, img, view="original_image", title="image")
    shown = []
    for k, (name, attribution) in enumerate(maps.items()):
        ax = fig.add_subplot(right[k // cols, k % cols])
        draw_view(ax, img, attribution, view, sign=sign, cmap=cmap, alpha=alpha, percentile=percentile,
                  reduce=reduce, title=_short(str(name), 22))  # fmt: skip
        shown.append(ax)
    if colorbar:
        map_colorbar(fig, shown, view, sign, cmap, percentile)
    if bars:
        _probability_bars(fig.add_subplot(left[1]), bars, true_label)
    text, color = _labels_title(title, true_label, predicted_label)
    if text:
        fig.suptitle(text, color=color, fontsize=12)
    return fig


def _probability_bars(ax: Axes, bars: list[tuple[str, float]], true_label: str | None) -> None:
    names = [b[0] for b in bars]
    colors = [RIGHT if true_label is not None and b == str(true_label) else "#9e9e9e" for b in names]
    y = np.arange(len(bars))
    ax.barh(y, [b[1] for b in bars], color=colors)
    ax.set_yticks(y, [_short(b) for b in names], fontsize=LABEL_PT)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=LABEL_PT)
    ax.set_title(f"top {len(bars)} classes", fontsize=TITLE_PT)
    ax.tick_params(axis="x", labelsize=LABEL_PT)
    for yi, (_, p) in zip(y, bars, strict=True):
        inside = p > 0.7
        ax.text(p - 0.01 if inside else p + 0.01, float(yi), f"{p:.1%}", va="center", ha="right" if inside else "left",
                color="white" if inside else "black", fontsize=LABEL_PT)  # fmt: skip


def _per_image(name: str, value: Iterable[ArrayLike], n: int) -> list[ArrayLike]:
    items = list(value)
    if len(items) != n:
        raise CnnlensError(f"maps[{name!r}] has {len(items)} attributions for {n} images; give one per image")
    return items


def method_grid(
    images: Iterable[ArrayLike],
    maps: Mapping[str, Iterable[ArrayLike]],
    row_labels: Sequence[str] | None = None,
    sign: str = "absolute",
    view: str = "blended",
    cmap: str | Colormap | None = None,
    alpha: float = 0.5,
    percentile: float | None = 99.0,
    reduce: str = "sum",
    title: str = "",
    colorbar: bool = True,
) -> Figure:
    """Rows = ``images`` (each (H, W, 3) in [0, 1], or a (N, H, W, 3) array); columns = the original then one
    ``view`` per method (``maps``: method name -> one attribution per image, e.g. a (N, C, H, W) tensor), with one
    colour bar for every map (``colorbar=False``: none). ``row_labels`` go on the left of each row; the column
    titles on the first row."""
    images = list(images)
    if not images:
        raise CnnlensError("images is empty: pass at least one image")
    view = view_name(view)
    columns = {str(k): _per_image(str(k), v, len(images)) for k, v in maps.items()}
    if row_labels is not None and len(row_labels) != len(images):
        raise CnnlensError(f"row_labels has {len(row_labels)} entries for {len(images)} images")
    n_rows, n_cols = len(images), 1 + len(columns)
    cell = max(1.3, min(2.3, (MAX_WIDTH - 1.4) / n_cols))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(cell * n_cols + 1.4, cell * n_rows + 0.5), squeeze=False, layout="constrained"
    )
    for i, image in enumerate(images):
        img = as_image(image)
        draw_view(axes[i, 0], img, view="original_image", title="original" if i == 0 else None)
        if row_labels is not None:
            axes[i, 0].set_ylabel(str(row_labels[i]), fontsize=LABEL_PT)
        for j, (name, attributions) in enumerate(columns.items(), start=1):
            draw_view(axes[i, j], img, attributions[i], view, sign=sign, cmap=cmap, alpha=alpha,
                      percentile=percentile, reduce=reduce, title=_short(name, 22) if i == 0 else None)  # fmt: skip
    if colorbar and columns:
        map_colorbar(fig, list(axes[:, 1:].ravel()), view, sign, cmap, percentile)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
