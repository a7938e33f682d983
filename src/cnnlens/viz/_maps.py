"""Attribution tensors -> 2-D maps in [-1, 1] or [0, 1], ready to draw."""

from __future__ import annotations

import numpy as np
import torch

from .._errors import CnnlensError

SIGNS = ("absolute", "positive", "negative", "all")


def to_heatmap(attribution: torch.Tensor | np.ndarray, sign: str = "absolute", percentile: float = 99.0) -> np.ndarray:
    """One image's attribution ``(C, H, W)`` or ``(H, W)`` -> ``(H, W)`` map scaled by an outlier percentile.

    Channels are summed (signed evidence adds up across colours). ``sign``: ``absolute`` and ``positive`` /
    ``negative`` give [0, 1] (``negative`` shows the magnitude of negative evidence), ``all`` gives [-1, 1].
    Values above the ``percentile`` of the magnitudes are clipped, so one hot pixel does not wash out the map.
    """
    if sign not in SIGNS:
        raise CnnlensError(f"sign must be one of {', '.join(SIGNS)}; got {sign!r}")
    a = attribution.detach().cpu().numpy() if isinstance(attribution, torch.Tensor) else np.asarray(attribution)
    if a.ndim == 3:
        a = a.sum(0)
    if a.ndim != 2:
        raise CnnlensError(f"expected one image's attribution (C, H, W) or (H, W); got shape {a.shape}")
    a = a.astype(np.float64)
    if sign == "absolute":
        a = np.abs(a)
    elif sign == "positive":
        a = np.clip(a, 0, None)
    elif sign == "negative":
        a = np.clip(-a, 0, None)
    scale = np.percentile(np.abs(a), percentile)
    if scale <= 0:
        scale = np.abs(a).max()
    if scale <= 0:
        return np.zeros_like(a)
    return np.clip(a / scale, -1.0, 1.0)
