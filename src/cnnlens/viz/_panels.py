"""Panels and grids: an image with several methods' maps, its top classes and its labels; images x methods."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Colormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .._errors import CnnlensError  # noqa: E402
from ._maps import as_image  # noqa: E402
from ._views import draw_view, view_name  # noqa: E402

RIGHT, WRONG = "#1a7f37", "#c62828"


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
    default: bright = pixels that move the explained score most). ``RdBu_r`` is used for ``sign="all"``.
    """
    n = 1 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.4), squeeze=False)
    ax = axes[0]
    draw_view(ax[0], image, view="original_image", title=title)
    lines = "\n".join(f"{p:6.1%}  {name}" for name, p in top_classes)
    ax[0].text(0.0, -0.03, lines, transform=ax[0].transAxes, va="top", ha="left", fontsize=8, family="monospace")
    for a, (name, attribution) in zip(ax[1:], maps.items(), strict=True):
        draw_view(a, image, attribution, "blended_heat_map", sign=sign, cmap="RdBu_r" if sign == "all" else cmap,
                  alpha=alpha)  # fmt: skip
        a.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def _top_k(top_k: Sequence[tuple[Any, ...]]) -> list[tuple[str, float]]:
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
    image: Any,
    maps: Mapping[str, Any],
    top_k: Sequence[tuple[Any, ...]] = (),
    true_label: str | None = None,
    predicted_label: str | None = None,
    sign: str = "absolute",
    view: str = "blended",
    cmap: str | Colormap | None = None,
    title: str = "",
    alpha: float = 0.5,
    percentile: float | None = 99.0,
    reduce: str = "sum",
    colorbar: bool = False,
) -> Figure:
    """One image explained by several methods: the image at full resolution (large, left), one ``view`` of each
    method's map (``maps``: method name -> attribution, in one or two rows), a horizontal bar chart of the
    ``top_k`` ``(class_name, probability)`` pairs or ``Classifier.predict`` rows ``(index, name, probability)``
    (the true class in green, the others gray) and a title with the true and predicted labels (green if they
    agree, red if not). ``predicted_label`` defaults to the most probable ``top_k`` class. Maps are resized to the image (a CAM at layer resolution too), so pass the image
    the model saw (``classifier.preprocessing.to_pixels(x)[i]``) or one with the same framing.
    """
    img = as_image(image)
    view = view_name(view)
    if not maps:
        raise CnnlensError("maps is empty: pass {method name: attribution} for at least one method")
    bars = _top_k(top_k)
    if predicted_label is None and bars:
        predicted_label = bars[0][0]
    n = len(maps)
    rows = 1 if n <= 2 else 2
    cols = math.ceil(n / rows)
    widths = [float(rows)] + [1.0] * cols + ([1.3] if bars else [])
    fig = plt.figure(figsize=(2.6 * sum(widths) + 0.4, 2.6 * rows + 0.7), layout="constrained")
    grid = fig.add_gridspec(rows, len(widths), width_ratios=widths)
    main = fig.add_subplot(grid[:, 0])
    draw_view(main, img, view="original_image", title="image")
    for k, (name, attribution) in enumerate(maps.items()):
        ax = fig.add_subplot(grid[k // cols, 1 + k % cols])
        draw_view(ax, img, attribution, view, sign=sign, cmap=cmap, alpha=alpha, percentile=percentile,
                  reduce=reduce, colorbar=colorbar, title=str(name))  # fmt: skip
    if bars:
        ax = fig.add_subplot(grid[:, -1])
        names = [b[0] for b in bars]
        colors = [RIGHT if true_label is not None and b == str(true_label) else "#9e9e9e" for b in names]
        y = np.arange(len(bars))
        ax.barh(y, [b[1] for b in bars], color=colors)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability", fontsize=8)
        ax.set_title(f"top {len(bars)}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        for yi, (_, p) in zip(y, bars, strict=True):
            inside = p > 0.75
            ax.text(p - 0.01 if inside else p + 0.01, yi, f"{p:.1%}", va="center", ha="right" if inside else "left",
                    color="white" if inside else "black", fontsize=7)  # fmt: skip
    text, color = _labels_title(title, true_label, predicted_label)
    if text:
        fig.suptitle(text, color=color, fontsize=11)
    return fig


def _per_image(name: str, value: Any, n: int) -> list[Any]:
    items = list(value)
    if len(items) != n:
        raise CnnlensError(f"maps[{name!r}] has {len(items)} attributions for {n} images; give one per image")
    return items


def method_grid(
    images: Sequence[Any],
    maps: Mapping[str, Sequence[Any]],
    row_labels: Sequence[str] | None = None,
    sign: str = "absolute",
    view: str = "blended",
    cmap: str | Colormap | None = None,
    alpha: float = 0.5,
    percentile: float | None = 99.0,
    reduce: str = "sum",
    title: str = "",
    colorbar: bool = False,
) -> Figure:
    """Rows = ``images`` (each (H, W, 3) in [0, 1], or a (N, H, W, 3) array); columns = the original then one
    ``view`` per method (``maps``: method name -> one attribution per image, e.g. a (N, C, H, W) tensor).
    ``row_labels`` go on the left of each row; the column titles on the first row."""
    images = list(images)
    if not images:
        raise CnnlensError("images is empty: pass at least one image")
    view = view_name(view)
    columns = {str(k): _per_image(str(k), v, len(images)) for k, v in maps.items()}
    if row_labels is not None and len(row_labels) != len(images):
        raise CnnlensError(f"row_labels has {len(row_labels)} entries for {len(images)} images")
    n_rows, n_cols = len(images), 1 + len(columns)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.3 * n_cols + 0.4, 2.3 * n_rows + 0.4), squeeze=False, layout="constrained"
    )
    for i, image in enumerate(images):
        img = as_image(image)
        draw_view(axes[i, 0], img, view="original_image", title="original" if i == 0 else None)
        if row_labels is not None:
            axes[i, 0].set_ylabel(str(row_labels[i]), fontsize=9)
        for j, (name, attributions) in enumerate(columns.items(), start=1):
            draw_view(axes[i, j], img, attributions[i], view, sign=sign, cmap=cmap, alpha=alpha,
                      percentile=percentile, reduce=reduce, colorbar=colorbar, title=name if i == 0 else None)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
