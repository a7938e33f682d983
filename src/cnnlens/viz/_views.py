"""Views of one attribution map: heat map, blended heat map, masked image, alpha scaling, original image.

Each view is a function returning an RGB float array ``(H, W, 3)`` in [0, 1]; :func:`draw_view` draws any of them
on a matplotlib axes (with an optional colorbar). Maps go through :func:`cnnlens.viz.to_heatmap` (channel
reduction, resize to the image, sign mode, outlier-percentile normalisation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, Unpack

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import Colormap, Normalize  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from skimage.color import rgb2gray  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ._legend import TITLE_PT, add_colorbar, scale_words, tag_map  # noqa: E402
from ._maps import SIGNS, as_image, to_heatmap  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.colorbar import Colorbar
    from matplotlib.figure import Figure, SubFigure
    from numpy.typing import ArrayLike

VIEWS = ("original_image", "heat_map", "blended_heat_map", "masked_image", "alpha_scaling")
_ALIASES = {
    "original": "original_image",
    "heat": "heat_map",
    "blended": "blended_heat_map",
    "masked": "masked_image",
    "alpha": "alpha_scaling",
}
BACKGROUNDS = {"white": 1.0, "black": 0.0}


class RenderOptions(TypedDict, total=False):
    """The options of :func:`render` that :func:`draw_view` passes on."""

    sign: str
    cmap: str | Colormap | None
    alpha: float
    grayscale: bool
    background: str | float
    percentile: float | None
    reduce: str


def view_name(view: str) -> str:
    """Full view name for ``view`` (short aliases: original, heat, blended, masked, alpha)."""
    name = _ALIASES.get(view, view)
    if name not in VIEWS:
        raise CnnlensError(f"view must be one of {', '.join(VIEWS)} (or {', '.join(_ALIASES)}); got {view!r}")
    return name


def default_cmap(sign: str) -> str:
    """Diverging ``RdBu_r`` (0 = white, red = for, blue = against) for ``sign="all"``, sequential ``inferno``
    otherwise."""
    return "RdBu_r" if sign == "all" else "inferno"


def colormap(cmap: str | Colormap | None, sign: str = "absolute") -> Colormap:
    """Any matplotlib colormap by name or object; ``None`` -> :func:`default_cmap`."""
    if isinstance(cmap, Colormap):
        return cmap
    name = default_cmap(sign) if cmap is None else cmap
    try:
        return matplotlib.colormaps[name]
    except KeyError as exc:
        raise CnnlensError(f"unknown matplotlib colormap {name!r}; see matplotlib.colormaps for the names") from exc


def map_range(sign: str) -> tuple[float, float]:
    """Colour range of a normalised map: (-1, 1) centred at 0 for ``all``, (0, 1) for the other sign modes."""
    if sign not in SIGNS:
        raise CnnlensError(f"sign must be one of {', '.join(SIGNS)}; got {sign!r}")
    return (-1.0, 1.0) if sign == "all" else (0.0, 1.0)


def _alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise CnnlensError(f"alpha must be in [0, 1]; got {alpha}")
    return float(alpha)


def _weights(image: np.ndarray, attribution: ArrayLike, sign: str, percentile: float | None, reduce: str) -> np.ndarray:
    if sign == "all":
        raise CnnlensError(
            "masked_image and alpha_scaling need weights in [0, 1]: use sign='absolute', 'positive' or 'negative'"
        )
    return to_heatmap(attribution, sign=sign, percentile=percentile, reduce=reduce, size=image.shape[:2])


def original_image(image: ArrayLike) -> np.ndarray:
    """The image itself as ``(H, W, 3)`` floats in [0, 1] (uint8, gray and channel-first inputs converted)."""
    return as_image(image)


def heat_map(
    attribution: ArrayLike,
    sign: str = "absolute",
    cmap: str | Colormap | None = None,
    percentile: float | None = 99.0,
    reduce: str = "sum",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The normalised map through ``cmap`` (range :func:`map_range`): ``cmap(norm(map))[..., :3]``."""
    vmin, vmax = map_range(sign)
    heat = to_heatmap(attribution, sign=sign, percentile=percentile, reduce=reduce, size=size)
    return np.asarray(colormap(cmap, sign)(Normalize(vmin, vmax)(heat)))[..., :3].astype(np.float64)


def blended_heat_map(
    image: ArrayLike,
    attribution: ArrayLike,
    sign: str = "absolute",
    cmap: str | Colormap | None = None,
    alpha: float = 0.5,
    grayscale: bool = True,
    percentile: float | None = 99.0,
    reduce: str = "sum",
) -> np.ndarray:
    """``(1 - alpha) * image + alpha * heat_map``; the image in grayscale (luminance, skimage ``rgb2gray``) by
    default so the colours are the map's. The map is resized to the image."""
    alpha = _alpha(alpha)
    img = as_image(image)
    heat = heat_map(attribution, sign, cmap, percentile, reduce, size=img.shape[:2])
    base = np.repeat(rgb2gray(img)[..., None], 3, axis=-1) if grayscale else img
    return (1.0 - alpha) * base + alpha * heat


def masked_image(
    image: ArrayLike,
    attribution: ArrayLike,
    sign: str = "absolute",
    percentile: float | None = 99.0,
    reduce: str = "sum",
) -> np.ndarray:
    """``image * map``: pixels without evidence go black (``sign="all"`` is refused: weights must be >= 0)."""
    img = as_image(image)
    return img * _weights(img, attribution, sign, percentile, reduce)[..., None]


def alpha_scaling(
    image: ArrayLike,
    attribution: ArrayLike,
    sign: str = "absolute",
    background: str | float = "white",
    percentile: float | None = 99.0,
    reduce: str = "sum",
) -> np.ndarray:
    """The image with opacity = normalised map over a ``white`` / ``black`` (or gray level) background:
    ``map * image + (1 - map) * background``."""
    img = as_image(image)
    if isinstance(background, str):
        if background not in BACKGROUNDS:
            raise CnnlensError(f"background must be 'white', 'black' or a gray level in [0, 1]; got {background!r}")
        bg = BACKGROUNDS[background]
    else:
        bg = float(background)
        if not 0.0 <= bg <= 1.0:
            raise CnnlensError(f"background gray level must be in [0, 1]; got {background}")
    w = _weights(img, attribution, sign, percentile, reduce)[..., None]
    return w * img + (1.0 - w) * bg


def render(
    view: str,
    image: ArrayLike | None = None,
    attribution: ArrayLike | None = None,
    sign: str = "absolute",
    cmap: str | Colormap | None = None,
    alpha: float = 0.5,
    grayscale: bool = True,
    background: str | float = "white",
    percentile: float | None = 99.0,
    reduce: str = "sum",
) -> np.ndarray:
    """Any view by name -> RGB ``(H, W, 3)``. ``heat_map`` needs no image (given one, the map is resized to it)."""
    view = view_name(view)
    if view == "heat_map":
        if attribution is None:
            raise CnnlensError(f"view {view!r} needs an attribution map")
        size = None if image is None else as_image(image).shape[:2]
        return heat_map(attribution, sign, cmap, percentile, reduce, size=size)
    if image is None:
        raise CnnlensError(f"view {view!r} needs the image")
    if view == "original_image":
        return original_image(image)
    if attribution is None:
        raise CnnlensError(f"view {view!r} needs an attribution map")
    if view == "blended_heat_map":
        return blended_heat_map(image, attribution, sign, cmap, alpha, grayscale, percentile, reduce)
    if view == "masked_image":
        return masked_image(image, attribution, sign, percentile, reduce)
    return alpha_scaling(image, attribution, sign, background, percentile, reduce)


def draw_view(
    ax: Axes,
    image: ArrayLike | None = None,
    attribution: ArrayLike | None = None,
    view: str = "blended_heat_map",
    *,
    colorbar: bool = False,
    title: str | None = None,
    **options: Unpack[RenderOptions],
) -> AxesImage:
    """Draw :func:`render` ``(view, image, attribution, **options)`` on ``ax`` (axis lines off); ``options`` are
    render's: sign, cmap, alpha, grayscale, background, percentile, reduce. ``colorbar=True`` adds the map's
    scale (:func:`map_colorbar`)."""
    view = view_name(view)
    rgb = render(view, image, attribution, **options)
    shown = ax.imshow(rgb)
    if view != "original_image":
        tag_map(shown)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, fontsize=TITLE_PT)
    if colorbar and view != "original_image":
        map_colorbar(ax.figure, ax, view, options.get("sign", "absolute"), options.get("cmap"),
                     options.get("percentile", 99.0))  # fmt: skip
    return shown


def map_colorbar(
    fig: Figure | SubFigure,
    axes: Axes | Sequence[Axes],
    view: str = "blended_heat_map",
    sign: str = "absolute",
    cmap: str | Colormap | None = None,
    percentile: float | None = 99.0,
) -> Colorbar:
    """One colour bar for maps drawn by :func:`draw_view` with these options (``axes``: one or several that
    share it): the colormap over :func:`map_range` for heat views, the [0, 1] weight in gray for masked / alpha
    views; labelled in words with the sign and the unit (see :func:`cnnlens.viz.scale_words`)."""
    view = view_name(view)
    heat = view in ("heat_map", "blended_heat_map")
    vmin, vmax = map_range(sign) if heat else (0.0, 1.0)
    label, ticks = scale_words(sign, percentile, view)
    return add_colorbar(fig, axes, colormap(cmap, sign) if heat else "gray", vmin, vmax, label, ticks)
