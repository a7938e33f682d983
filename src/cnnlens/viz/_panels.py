"""A panel per image: the photo, each method's map blended over it, and the model's top classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ._maps import to_heatmap  # noqa: E402


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
    default: bright = pixels that move the explained score most).
    """
    n = 1 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.4), squeeze=False)
    ax = axes[0]
    ax[0].imshow(image)
    ax[0].set_title(title, fontsize=9)
    lines = "\n".join(f"{p:6.1%}  {name}" for name, p in top_classes)
    ax[0].text(0.0, -0.03, lines, transform=ax[0].transAxes, va="top", ha="left", fontsize=8, family="monospace")
    gray = image.mean(axis=2)
    vmin = -1.0 if sign == "all" else 0.0
    for a, (name, attribution) in zip(ax[1:], maps.items(), strict=True):
        heat = to_heatmap(attribution, sign=sign)
        a.imshow(gray, cmap="gray", vmin=0, vmax=1)
        a.imshow(heat, cmap="RdBu_r" if sign == "all" else cmap, vmin=vmin, vmax=1.0, alpha=alpha)
        a.set_title(name, fontsize=9)
    for a in ax:
        a.set_axis_off()
    fig.tight_layout()
    return fig
