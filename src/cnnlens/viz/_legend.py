"""What a reader needs to read a map: a colour bar that says what the colours mean (sign and units), readable type
sizes, and the layout of a figure (where its maps, colour bars and labels are) for checks in a real browser.

Heat-map images drawn by cnnlens carry the gid ``cnnlens-map`` and colour-bar axes ``cnnlens-colorbar``, so that
:func:`figure_layout` can find them in any figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colorbar import Colorbar  # noqa: E402
from matplotlib.colors import Colormap, Normalize  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402

MAP_GID = "cnnlens-map"
COLORBAR_GID = "cnnlens-colorbar"
LABEL_PT = 9.0
"""The smallest type size (points) cnnlens figures use for labels, titles and tick labels."""
TITLE_PT = 10.0
"""Type size of panel titles (the method name above a map)."""


def scale_words(sign: str, percentile: float | None = 99.0, view: str = "heat") -> tuple[str, dict[float, str]]:
    """(colour-bar label, tick labels) for a map normalised by :func:`cnnlens.viz.to_heatmap`: what the colours
    mean in words, with the sign and the unit (relative to the map's ``percentile`` of magnitudes)."""
    unit = "of its maximum" if percentile is None or float(percentile) >= 100 else f"of its top {100 - percentile:g}%"
    if view in ("masked_image", "alpha_scaling"):
        return f"pixel kept in proportion to |evidence|\n(share {unit})", {0.0: "hidden", 1.0: "kept"}
    if sign == "all":
        return f"red: for the class, blue: against\n(share {unit})", {-1.0: "against", 0.0: "0", 1.0: "for"}
    what = {
        "absolute": "|evidence| (either sign)",
        "positive": "evidence for the class",
        "negative": "evidence against",
    }
    if sign not in what:
        raise CnnlensError(f"sign must be one of {', '.join(what)} or 'all'; got {sign!r}")
    return f"{what[sign]}\n(share {unit})", {0.0: "0", 0.5: "0.5", 1.0: "1"}


def add_colorbar(
    fig: Figure | SubFigure,
    axes: Axes | Sequence[Axes],
    cmap: str | Colormap,
    vmin: float,
    vmax: float,
    label: str,
    ticks: dict[float, str] | None = None,
    fraction: float = 0.05,
) -> Colorbar:
    """A vertical colour bar to the right of ``axes`` (one axes or several sharing the scale), tagged
    ``cnnlens-colorbar``, with ``label`` along it and optional worded ``ticks`` ({value: text})."""
    mappable = ScalarMappable(Normalize(vmin, vmax), cmap)
    bar = fig.colorbar(mappable, ax=axes, fraction=fraction, pad=0.02, aspect=25)
    bar.ax.set_gid(COLORBAR_GID)
    bar.set_label(label, fontsize=LABEL_PT)
    if ticks:
        bar.set_ticks(list(ticks), labels=list(ticks.values()))
    bar.ax.tick_params(labelsize=LABEL_PT)
    return bar


def tag_map(image: AxesImage) -> AxesImage:
    """Mark a drawn image (``AxesImage``) as a map, for :func:`figure_layout`; returns it."""
    image.set_gid(MAP_GID)
    return image


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def figure_layout(fig: Figure, dpi: float, tight: bool = True, drawn: bool = False, pad_inches: float = 0.1) -> dict:
    """Where things are in ``fig`` saved at ``dpi``: ``dpi``, ``size`` (width, height) of the PNG and, in its
    pixels (origin top left), boxes ``[x0, y0, x1, y1]`` of ``maps`` (axes showing a map), ``colorbars`` and
    ``texts`` (each box followed by its type size in points).

    ``tight``: as saved with ``bbox_inches="tight"`` (the figure is drawn to find the crop); ``False``: as saved
    without cropping. ``drawn=True`` (with ``tight=False``): the figure was just saved at ``dpi``, so the positions
    of that draw are read as they are (no second draw)."""
    if fig.dpi != dpi:
        fig.set_dpi(dpi)
        drawn = False
    if tight:
        fig.canvas.draw()
    elif not drawn:
        fig.draw_without_rendering()
    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        raise CnnlensError(f"figure_layout measures on an Agg canvas; this figure has {type(canvas).__name__}")
    renderer = canvas.get_renderer()
    if tight:
        crop = fig.get_tightbbox(renderer, bbox_extra_artists=fig.get_default_bbox_extra_artists()).padded(pad_inches)
        x0, y1, width, height = crop.x0 * dpi, crop.y1 * dpi, crop.width * dpi, crop.height * dpi
    else:
        width, height = fig.bbox.width, fig.bbox.height
        x0, y1 = 0.0, height

    def box(extent: Bbox) -> list[float]:
        return [round(extent.x0 - x0, 1), round(y1 - extent.y1, 1), round(extent.x1 - x0, 1), round(y1 - extent.y0, 1)]

    maps = [ax for ax in fig.axes if any(im.get_gid() == MAP_GID for im in ax.get_images())]
    bars = [ax for ax in fig.axes if ax.get_gid() == COLORBAR_GID]
    texts = [(t, t.get_window_extent(renderer)) for t in _texts(fig)]
    return {
        "dpi": dpi,
        "size": [round(width), round(height)],
        "maps": [box(ax.get_window_extent(renderer)) for ax in maps],
        "colorbars": [box(ax.get_window_extent(renderer)) for ax in bars],
        "texts": [[*box(e), round(float(t.get_fontsize()), 2)] for t, e in texts if e.width > 0 and e.height > 0],
    }
