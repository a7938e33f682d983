"""The app's pictures as PNG bytes: the photo as the model saw it, a stored map drawn with the report's own views
(`cnnlens.viz.render`: sign mode, colormap, opacity, outlier percentile), and a colour bar."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..core.errors import CnnlensError

CMAPS = ("auto", "inferno", "viridis", "magma", "cividis", "gray", "RdBu_r", "coolwarm", "PiYG", "jet")
"""Colormaps the pages offer (``auto``: the report's, `cnnlens.viz.default_cmap` of the sign mode)."""
VIEWS = ("blended_heat_map", "heat_map", "masked_image", "alpha_scaling")
WEIGHT_VIEWS = ("masked_image", "alpha_scaling")
"""Views that use the map as weights in [0, 1]: they take no sign mode ``all``."""
THUMB = 96


def png(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` floats in [0, 1] (or uint8) as PNG bytes."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def fit(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """Scaled down (area-averaged) so that its longer side is at most ``size`` pixels; small images unchanged (the
    page enlarges them without smoothing)."""
    if size is None or max(rgb.shape[:2]) <= size:
        return rgb
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)) / 255.0


def pixels(item: Any, preprocessing: Any) -> np.ndarray:
    """One data set sample as the model sees it, ``(H, W, 3)`` in [0, 1]: resized and cropped by the store's
    preprocessing (an already preprocessed tensor is shown scaled to its own range)."""
    import torch

    if isinstance(item, torch.Tensor):
        a = item.detach().float().cpu()
        a = a if a.dim() == 3 else a[None]
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
        a = a.expand(3, -1, -1) if a.shape[0] == 1 else a[:3]
        return a.permute(1, 2, 0).numpy().astype(np.float64)
    if preprocessing is None:
        raise CnnlensError(
            "the store's model has no preprocessing, so its images cannot be shown as the model saw them"
        )
    return preprocessing.to_pixels(preprocessing(item))[0].astype(np.float64)


def check_look(view: str, sign: str, cmap: str, alpha: float) -> None:
    """The drawing options the pages send, checked (``CnnlensError`` names the bad one)."""
    from ..viz import SIGNS

    if view not in VIEWS:
        raise CnnlensError(f"view must be one of {', '.join(VIEWS)}; got {view!r}")
    if sign not in SIGNS:
        raise CnnlensError(f"sign must be one of {', '.join(SIGNS)}; got {sign!r}")
    if cmap not in CMAPS:
        raise CnnlensError(f"colormap must be one of {', '.join(CMAPS)}; got {cmap!r}")
    if not 0.0 <= alpha <= 1.0:
        raise CnnlensError(f"opacity must be in [0, 1]; got {alpha}")
    if view in WEIGHT_VIEWS and sign == "all":
        raise CnnlensError(f"{view} uses the map as weights in [0, 1]: choose the sign absolute, positive or negative")


def map_picture(
    image: np.ndarray | None, attribution: np.ndarray, view: str, sign: str, cmap: str, alpha: float
) -> np.ndarray:
    """A stored map ``(C, h, w)`` drawn over ``image`` (``(H, W, 3)``; None: the heat map alone) with the
    report's views; maps smaller than the image are resized bilinearly to it."""
    from ..viz import render

    check_look(view, sign, cmap, alpha)
    if image is None:
        view = "heat_map"
    attribution = np.nan_to_num(attribution, nan=0.0)  # float16 overflow is stored as NaN (the row's warning says so)
    return render(view, image, attribution, sign=sign, cmap=None if cmap == "auto" else cmap, alpha=alpha)


def colorbar(sign: str, cmap: str, view: str) -> np.ndarray:
    """The colour scale of a map view, left to right: the colormap over `cnnlens.viz.map_range` for heat views,
    black to white (the weight) for masked and alpha views."""
    from matplotlib.colors import Normalize

    from ..viz import colormap, map_range

    check_look(view, sign, cmap, 0.5)
    if view in WEIGHT_VIEWS:
        ramp = np.linspace(0.0, 1.0, 256)
        return np.repeat(np.repeat(ramp[None, :, None], 3, axis=2), 12, axis=0)
    vmin, vmax = map_range(sign)
    colours = colormap(None if cmap == "auto" else cmap, sign)(Normalize(vmin, vmax)(np.linspace(vmin, vmax, 256)))
    return np.repeat(np.asarray(colours)[None, :, :3], 12, axis=0)
