"""Layer attributions ``(C, h, w)``: the channels ranked by their share, each with its feature map; the spatial map.

A layer method (``cnnlens.explain(..., "layer_conductance", layer=...)``) gives one value per unit of the layer.
:func:`ranked_channels` sums them per channel; :func:`layer_channels_figure` shows the top channels with what they
respond to (their feature maps over the image) and where their attribution lies; :func:`spatial_map` sums over
the channels and upsamples to the image, for any view (``blended_heat_map(image, spatial_map(a, size))``).
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
from ._maps import _array, _finite, as_image, resize_map  # noqa: E402
from ._views import draw_view  # noqa: E402

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

ORDERS = ("positive", "negative", "absolute")


def _one_image(value: ArrayLike, what: str) -> np.ndarray:
    a = _finite(_array(value, what), what)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:  # a vector layer (B, K) gives (1, K): one unit per channel
        a = a[0][:, None, None] if a.shape[0] == 1 else a
    if a.ndim != 3:
        raise CnnlensError(
            f"{what} must be one image's layer output (C, h, w) or (1, C, h, w); got shape {a.shape} (for a batch, "
            "pass explanation.attributions[i])"
        )
    return a


def ranked_channels(attribution: ArrayLike, top: int = 8, order: str = "positive") -> list[tuple[int, float]]:
    """``[(channel, total attribution), ...]`` for the ``top`` channels of one image's layer attribution.

    ``order``: ``positive`` (most evidence for the explained score first), ``negative`` (most against) or
    ``absolute`` (largest magnitude). A channel's total is the sum over its units.
    """
    if order not in ORDERS:
        raise CnnlensError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if top < 1:
        raise CnnlensError(f"top must be >= 1; got {top}")
    a = _one_image(attribution, "attribution")
    totals = a.reshape(a.shape[0], -1).sum(1)
    key = {"positive": -totals, "negative": totals, "absolute": -np.abs(totals)}[order]
    picks = np.argsort(key, kind="stable")[:top]
    return [(int(c), float(totals[c])) for c in picks]


def spatial_map(attribution: ArrayLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image's layer attribution summed over its channels ``(h, w)``, bilinearly upsampled to ``size``."""
    a = _one_image(attribution, "attribution").sum(0)
    return a if size is None else resize_map(a, size)


def layer_channels_figure(
    attribution: ArrayLike,
    activations: ArrayLike | None = None,
    image: ArrayLike | None = None,
    top: int = 8,
    order: str = "positive",
    title: str = "",
) -> Figure:
    """The ``top`` channels of one image's layer attribution ``(C, h, w)``, ranked (``order``, see
    :func:`ranked_channels`): a bar chart of their totals, and per channel its feature map (``activations``, the
    layer's output ``(C, h, w)``, e.g. ``explanation.info["activations"][i]``; blended over ``image`` when given)
    above its attribution map (red: for the explained score, blue: against)."""
    attr = _one_image(attribution, "attribution")
    acts = None if activations is None else _one_image(activations, "activations")
    if acts is not None and acts.shape != attr.shape:
        raise CnnlensError(f"activations {acts.shape} and attribution {attr.shape} must have the same shape")
    ranked = ranked_channels(attr, top, order)
    img = None if image is None else as_image(image)
    rows = 2 if acts is not None else 1
    cols = len(ranked)
    width = min(11.0, 1.35 * cols + 2.4)  # at most the width a report shows at full size
    fig = plt.figure(figsize=(width, (width - 2.4) / cols * rows + 1.0), layout="constrained")
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.6] + [1.0] * cols)
    bars = fig.add_subplot(grid[:, 0])
    values = [v for _, v in ranked]
    y = np.arange(len(ranked))
    bars.barh(y, values, color=["#c62828" if v > 0 else "#1565c0" for v in values])
    bars.set_yticks(y, [f"ch {c}" for c, _ in ranked], fontsize=LABEL_PT)
    bars.invert_yaxis()
    bars.axvline(0, color="black", lw=0.6)
    bars.set_xlabel("total attribution", fontsize=LABEL_PT)
    bars.tick_params(axis="x", labelsize=LABEL_PT)
    lim = float(np.abs(attr).max()) or 1.0
    attr_axes: list[Axes] = []
    for k, (c, v) in enumerate(ranked):
        if acts is not None:
            ax = fig.add_subplot(grid[0, k + 1])
            if img is not None:
                draw_view(
                    ax,
                    img,
                    acts[c],
                    "blended_heat_map",
                    sign="positive",
                    percentile=None,
                    title=f"ch {c}",
                    colorbar=k == len(ranked) - 1,
                )
            else:
                tag_map(ax.imshow(acts[c], cmap="viridis"))
                ax.set_title(f"ch {c}", fontsize=LABEL_PT)
                ax.set_xticks([])
                ax.set_yticks([])
            if k == 0:
                ax.set_ylabel("feature map", fontsize=LABEL_PT)
        ax = fig.add_subplot(grid[rows - 1, k + 1])
        tag_map(ax.imshow(attr[c], cmap="RdBu_r", vmin=-lim, vmax=lim))
        attr_axes.append(ax)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{v:+.3g}" if acts is not None else f"ch {c}: {v:+.3g}", fontsize=LABEL_PT)
        if k == 0:
            ax.set_ylabel("attribution", fontsize=LABEL_PT)
    add_colorbar(fig, attr_axes, "RdBu_r", -lim, lim, "attribution (red: for, blue: against)")
    if title:
        fig.suptitle(title, fontsize=TITLE_PT)
    return fig
