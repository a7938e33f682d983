"""Attribution tensors -> 2-D maps in [-1, 1] or [0, 1], ready to draw; images -> (H, W, 3) floats in [0, 1].

Order of operations for one map: channels reduced (``reduce``) -> resized bilinearly to ``size`` (if given) ->
sign mode applied -> divided by the ``percentile`` of the magnitudes and clipped. All pure NumPy in and out
(torch tensors are accepted and converted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import CnnlensError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

SIGNS = ("absolute", "positive", "negative", "all")
REDUCTIONS = ("sum", "max_abs", "l2")


def _array(value: ArrayLike, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
        return value.numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the caller's input
        raise CnnlensError(f"{what} must be a NumPy array or a torch tensor; got {type(value).__name__}") from exc


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise CnnlensError(f"{what} must hold numbers; got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise CnnlensError(f"{what} has {bad} NaN or infinite values; fix the computation that produced it")
    return a


def reduce_channels(attribution: ArrayLike, reduce: str = "sum") -> np.ndarray:
    """One image's attribution ``(C, H, W)``, ``(1, H, W)`` or ``(H, W)`` -> ``(H, W)`` float64 (a leading batch
    axis of size 1 is dropped).

    ``reduce`` over the channels: ``sum`` (signed evidence adds up across colours), ``max_abs`` (the channel value
    of largest magnitude, sign kept) or ``l2`` (Euclidean norm, never negative).
    """
    if reduce not in REDUCTIONS:
        raise CnnlensError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}")
    a = _array(attribution, "attribution")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] > 4 and a.shape[-1] in (1, 3):
        raise CnnlensError(
            f"attribution shape {a.shape} looks channel-last; pass one image's map channel-first (C, H, W) or (H, W)"
        )
    if a.ndim not in (2, 3) or a.size == 0:
        raise CnnlensError(
            f"expected one image's attribution (C, H, W), (1, H, W) or (H, W); got shape {a.shape} "
            "(for a batch, pass explanation.attributions[i])"
        )
    a = _finite(a, "attribution")
    if a.ndim == 2:
        a = a[None]
    if reduce == "sum":
        return a.sum(0)
    if reduce == "l2":
        return np.sqrt((a * a).sum(0))
    idx = np.abs(a).argmax(0)
    return np.take_along_axis(a, idx[None], 0)[0]


def resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` map -> ``(H, W)``, bilinear with half-pixel centres (``align_corners=False``, as the CAM methods
    upsample), so a layer-resolution CAM lines up with the image. Unchanged when the size already matches."""
    heat = np.asarray(heat, dtype=np.float64)
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise CnnlensError(f"size must be two positive integers (H, W); got {size}")
    if heat.shape == (h, w):
        return heat
    t = torch.from_numpy(np.ascontiguousarray(heat))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def apply_sign(heat: np.ndarray, sign: str) -> np.ndarray:
    """``absolute`` -> |a|; ``positive`` -> max(a, 0); ``negative`` -> max(-a, 0) (magnitude of negative
    evidence); ``all`` -> a unchanged."""
    if sign not in SIGNS:
        raise CnnlensError(f"sign must be one of {', '.join(SIGNS)}; got {sign!r}")
    if sign == "absolute":
        return np.abs(heat)
    if sign == "positive":
        return np.clip(heat, 0.0, None)
    if sign == "negative":
        return np.clip(-heat, 0.0, None)
    return heat


def normalize_map(heat: np.ndarray, percentile: float | None = 99.0) -> np.ndarray:
    """Divide by the ``percentile`` of ``|heat|`` and clip to [-1, 1] (to [0, 1] for a map without negatives):
    values above that percentile are capped at 1, so one hot pixel does not wash out the map. ``None`` or 100
    scales by the maximum. When the percentile is 0 (a mostly-zero map) the maximum is used; an all-zero map
    stays zero."""
    if percentile is not None and not 0.0 < float(percentile) <= 100.0:
        raise CnnlensError(f"percentile must be in (0, 100] or None; got {percentile}")
    mag = np.abs(heat)
    scale = mag.max() if percentile is None else float(np.percentile(mag, float(percentile)))
    if scale <= 0:
        scale = mag.max()
    if scale <= 0:
        return np.zeros_like(heat, dtype=np.float64)
    return np.clip(heat / scale, -1.0, 1.0)


def to_heatmap(
    attribution: ArrayLike,
    sign: str = "absolute",
    percentile: float | None = 99.0,
    reduce: str = "sum",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """One image's attribution ``(C, H, W)``, ``(1, H, W)`` or ``(H, W)`` -> ``(H, W)`` map ready to colour.

    ``sign``: ``absolute``, ``positive`` and ``negative`` give [0, 1] (``negative`` shows the magnitude of
    negative evidence), ``all`` gives [-1, 1] with 0 kept at 0. ``size=(H, W)`` resizes bilinearly first (a CAM
    at layer resolution drawn over the image). See :func:`normalize_map` for ``percentile``.
    """
    if sign not in SIGNS:
        raise CnnlensError(f"sign must be one of {', '.join(SIGNS)}; got {sign!r}")
    heat = reduce_channels(attribution, reduce)
    if size is not None:
        heat = resize_map(heat, size)
    return normalize_map(apply_sign(heat, sign), percentile)


def as_image(image: ArrayLike) -> np.ndarray:
    """An image for display -> ``(H, W, 3)`` float64 in [0, 1].

    Accepts ``(H, W, 3)``, ``(H, W, 4)`` (alpha dropped), ``(H, W, 1)``, ``(H, W)`` (gray) or a channel-first
    ``(3, H, W)`` / ``(1, H, W)``; uint8 is divided by 255; floats must already be in [0, 1].
    """
    a = _array(image, "image")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise CnnlensError(f"expected one image (H, W, 3), (H, W) or (3, H, W); got shape {a.shape}")
    integer = np.issubdtype(a.dtype, np.integer)
    a = _finite(a, "image")
    if a.shape[-1] == 4:
        a = a[..., :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if integer:
        if a.min() < 0 or a.max() > 255:
            raise CnnlensError(f"an integer image must be in 0..255; got {a.min():g}..{a.max():g}")
        return a / 255.0
    if a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise CnnlensError(
            f"a float image must be in [0, 1]; got {a.min():.3g}..{a.max():.3g}. For a preprocessed (normalised) "
            "tensor pass classifier.preprocessing.to_pixels(x)[i]"
        )
    return np.clip(a, 0.0, 1.0)
