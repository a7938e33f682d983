"""Superpixel boundaries (the masks LIME / KernelSHAP perturb) and saliency -> bounding box (weak localisation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.segmentation import mark_boundaries  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ._maps import _array, apply_sign, as_image, reduce_channels, resize_map  # noqa: E402

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

Box = tuple[int, int, int, int]


def _segments(segments: ArrayLike, size: tuple[int, ...]) -> np.ndarray:
    s = _array(segments, "segments")
    while s.ndim > 2 and s.shape[0] == 1:
        s = s[0]
    if s.ndim == 3 and (s == s[:1]).all():  # a mask expanded over the channels
        s = s[0]
    if s.ndim != 2:
        raise CnnlensError(f"segments must be one image's integer labels (H, W); got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        raise CnnlensError(f"segments must be integer labels; got dtype {s.dtype}")
    if s.shape != tuple(size):
        raise CnnlensError(f"segments have shape {s.shape} but the image is {tuple(size)}; they must match")
    return s


def superpixel_boundaries(
    image: ArrayLike, segments: ArrayLike, color: tuple[float, float, float] = (1.0, 1.0, 0.0), mode: str = "outer"
) -> np.ndarray:
    """The image ``(H, W, 3)`` in [0, 1] with the borders between ``segments`` (integer labels ``(H, W)``, e.g.
    a feature mask of LIME / KernelSHAP) drawn in ``color`` (skimage ``mark_boundaries``; ``mode`` as there)."""
    img = as_image(image)
    labels = _segments(segments, img.shape[:2])
    try:
        return np.asarray(mark_boundaries(img, labels, color=color, mode=mode), dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise CnnlensError(f"cannot mark boundaries (color={color!r}, mode={mode!r}): {exc}") from exc


def bounding_box(
    attribution: ArrayLike,
    threshold: float | None = None,
    percentile: float | None = None,
    sign: str = "absolute",
    reduce: str = "sum",
    size: tuple[int, int] | None = None,
) -> Box | None:
    """Box ``(x0, y0, x1, y1)`` of the largest connected region of strong evidence, or ``None`` when the map has
    no evidence at all (all zero after the sign mode).

    The map (channels reduced, resized to ``size`` if given, sign applied) is kept where it is at least
    ``threshold`` times its maximum (default 0.5), or, with ``percentile=p``, at least its p-th percentile (and
    above 0); exactly one of the two may be given. Regions are 8-connected (``scipy.ndimage.label``); the largest
    by pixel count wins, ties going to the larger total evidence. Coordinates are pixel indices with the end
    excluded, like slices: the region is ``map[y0:y1, x0:x1]``.
    """
    if threshold is not None and percentile is not None:
        raise CnnlensError("give either threshold (fraction of the maximum) or percentile, not both")
    if sign == "all":
        raise CnnlensError("a box needs one kind of evidence: use sign='absolute', 'positive' or 'negative'")
    heat = reduce_channels(attribution, reduce)
    if size is not None:
        heat = resize_map(heat, size)
    heat = apply_sign(heat, sign)
    top = heat.max()
    if top <= 0:
        return None
    if percentile is not None:
        if not 0.0 <= float(percentile) <= 100.0:
            raise CnnlensError(f"percentile must be in [0, 100]; got {percentile}")
        keep = (heat >= np.percentile(heat, float(percentile))) & (heat > 0)
    else:
        t = 0.5 if threshold is None else float(threshold)
        if not 0.0 < t <= 1.0:
            raise CnnlensError(f"threshold is a fraction of the map's maximum, in (0, 1]; got {threshold}")
        keep = heat >= t * top
    labels, n = ndimage.label(keep, structure=np.ones((3, 3), dtype=int))
    index = np.arange(1, n + 1)
    counts = ndimage.sum_labels(np.ones_like(heat), labels, index)
    mass = ndimage.sum_labels(heat, labels, index)
    best = int(index[np.lexsort((-mass, -counts))[0]])
    rows, cols = ndimage.find_objects(labels)[best - 1]
    return (int(cols.start), int(rows.start), int(cols.stop), int(rows.stop))


def draw_bounding_box(
    ax: Axes, box: Box | None, color: str = "lime", linewidth: float = 2.0, label: str | None = None
) -> Rectangle:
    """Draw ``box`` (from :func:`bounding_box`) on an axes showing the image with ``imshow`` (pixel centres at
    integer coordinates, so the rectangle runs along the outer pixel edges); ``label`` is written at its top."""
    if box is None:
        raise CnnlensError("no box to draw: bounding_box returned None because the map has no evidence")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise CnnlensError(f"a box is (x0, y0, x1, y1) with x1 > x0 and y1 > y0; got {box}")
    rect = Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=linewidth)
    ax.add_patch(rect)
    if label:
        ax.text(x0 - 0.5, y0 - 0.5, label, color=color, fontsize=8, va="bottom", ha="left")
    return rect
