"""Feature masks: which pixels form one feature (segment) for the perturbation methods.

A mask spec is a regular grid (``"grid:16"`` = 16x16-pixel cells, ``"grid:8x4"`` = cells 8 rows by 4 columns),
a scikit-image superpixel segmentation (``"slic:100"`` ~ 100 segments, ``"quickshift"`` / ``"quickshift:5"``
kernel size, ``"felzenszwalb"`` / ``"felzenszwalb:100"`` scale, ``"watershed:100"`` ~ 100 markers), an integer
tensor ``(H, W)`` shared by all images or ``(B, H, W)`` one per image (a channel axis, of size 1 or expanded
over the channels, is accepted), or a list with one of these per image. Labels of a tensor must be ``0..S-1``
with every label used. A mask is the same for every channel. Superpixels are computed on each image scaled
to [0, 1] by its own range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.errors import CnnlensError

T = torch.Tensor
ALGORITHMS = ("grid", "slic", "quickshift", "felzenszwalb", "watershed")
MaskSpec = str | T | Sequence[str | T]


def feature_masks(spec: MaskSpec, inputs: T) -> tuple[T, list[int]]:
    """``(labels (B, H, W) long on the inputs' device, segments per image)``; labels are ``0..S_i-1``."""
    b, _, h, w = inputs.shape
    if isinstance(spec, (list, tuple)):
        if len(spec) != b:
            raise CnnlensError(f"a list of masks needs one per image: got {len(spec)} for {b} images")
        parts = [feature_masks(s, inputs[i : i + 1]) for i, s in enumerate(spec)]
        return torch.cat([p[0] for p in parts]), [p[1][0] for p in parts]
    if isinstance(spec, str):
        labels = torch.stack([_from_name(spec, inputs[i]) for i in range(b)])
        return _consecutive(labels.to(inputs.device))
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return _from_tensor(torch.as_tensor(spec), inputs)
    raise CnnlensError(
        f"mask must be a name ({', '.join(ALGORITHMS)}, e.g. 'grid:16' or 'slic:100'), an integer tensor "
        f"(H, W) or (B, H, W), or a list of those per image; got {type(spec).__name__}"
    )


def _from_tensor(m: T, inputs: T) -> tuple[T, list[int]]:
    b, _, h, w = inputs.shape
    if m.dtype.is_floating_point or m.dtype.is_complex or m.dtype == torch.bool:
        raise CnnlensError(f"a feature mask must be an integer tensor of segment labels; got dtype {m.dtype}")
    shape = tuple(m.shape)
    if m.dim() == 4 and m.shape[1] == inputs.shape[1] > 1:  # a mask expanded over the channels
        if not (m == m[:, :1]).all():
            raise CnnlensError("a feature mask is shared by all channels: give it as (H, W) or (B, H, W)")
        m = m[:, :1]
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if m.dim() == 2:
        m = m.unsqueeze(0).expand(b, -1, -1)
    if m.dim() != 3 or m.shape != (b, h, w):
        raise CnnlensError(
            f"feature mask of shape {shape} does not fit inputs of shape {tuple(inputs.shape)}: give ({h}, {w}) "
            f"shared by all images or ({b}, {h}, {w}) one per image"
        )
    m = m.to(inputs.device).long()
    if (m < 0).any():
        raise CnnlensError("feature mask labels must be >= 0 (segment numbers 0..S-1)")
    counts = []
    for i in range(b):
        used = torch.bincount(m[i].flatten())
        empty = (used == 0).nonzero().flatten()
        if len(empty):
            raise CnnlensError(
                f"feature mask of image {i}: segment {empty[0].item()} is empty (no pixel); labels must be "
                f"0..S-1 with every label used ({len(empty)} of {len(used)} labels unused)"
            )
        counts.append(len(used))
    return m.contiguous(), counts


def _consecutive(labels: T) -> tuple[T, list[int]]:
    out, counts = torch.empty_like(labels), []
    for i in range(labels.shape[0]):
        uniq, inv = torch.unique(labels[i], return_inverse=True)
        out[i] = inv
        counts.append(len(uniq))
    return out, counts


def _parse(spec: str) -> tuple[str, str | None]:
    name, _, arg = spec.partition(":")
    if name not in ALGORITHMS:
        raise CnnlensError(f"unknown mask {spec!r}; use one of {', '.join(ALGORITHMS)} (e.g. 'grid:16', 'slic:100')")
    return name, arg or None


def _number(name: str, arg: str | None, default: float, kind: type = int) -> Any:
    if arg is None:
        return default
    try:
        value = kind(arg)
    except ValueError:
        raise CnnlensError(f"mask '{name}:{arg}': {arg!r} is not a number") from None
    if value <= 0:
        raise CnnlensError(f"mask '{name}:{arg}': the number must be positive")
    return value


def grid(h: int, w: int, cell: tuple[int, int]) -> T:
    """Labels of a regular grid of ``cell`` (rows, columns) pixels, row-major (cells at the border may be cut)."""
    ch, cw = cell
    rows = torch.arange(h) // ch
    cols = torch.arange(w) // cw
    return rows[:, None] * ((w + cw - 1) // cw) + cols[None, :]


def _from_name(spec: str, image: T) -> T:
    name, arg = _parse(spec)
    _, h, w = image.shape
    if name == "grid":
        if arg is not None and "x" in arg:
            a, _, c = arg.partition("x")
            cell = (_number(name, a, 16), _number(name, c, 16))
        else:
            size = _number(name, arg, 16)
            cell = (size, size)
        return grid(h, w, cell)
    from skimage import segmentation

    pixels = _as_pixels(image)
    channel_axis = -1 if pixels.shape[-1] > 1 else None
    data = pixels if channel_axis is not None else pixels[..., 0]
    if name == "slic":
        n = _number(name, arg, 100)
        seg = segmentation.slic(data, n_segments=n, compactness=10.0, start_label=0, channel_axis=channel_axis)
    elif name == "quickshift":
        if pixels.shape[-1] != 3:
            raise CnnlensError("quickshift segments RGB images only; use slic or felzenszwalb for other channels")
        k = _number(name, arg, 5.0, float)
        seg = segmentation.quickshift(pixels, kernel_size=k, max_dist=4 * k, ratio=0.5, rng=0)
    elif name == "felzenszwalb":
        scale = _number(name, arg, 100.0, float)
        seg = segmentation.felzenszwalb(data, scale=scale, sigma=0.8, min_size=20, channel_axis=channel_axis)
    else:  # watershed on the gradient magnitude, with about n compact markers
        from skimage.filters import sobel

        n = _number(name, arg, 100)
        gray = pixels.mean(-1)
        seg = segmentation.watershed(sobel(gray), markers=n, compactness=0.001)
    return torch.from_numpy(np.ascontiguousarray(seg)).long()


def _as_pixels(image: T) -> np.ndarray:
    """(H, W, C) float64 in [0, 1]: each image scaled by its own range (segmentation needs no exact colours)."""
    a = image.detach().float().cpu().permute(1, 2, 0).numpy().astype(np.float64)
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def paint(values: T, labels: T, channels: int, spread: bool = False) -> T:
    """``(B, S)`` segment values to ``(B, C, H, W)``: the value at every pixel of its segment, or with
    ``spread`` divided over the segment's pixels and channels (so that the attributions sum to the values)."""
    per_pixel = values.gather(1, labels.flatten(1)).view(labels.shape)
    if spread:
        sizes = torch.stack([torch.bincount(lab.flatten(), minlength=values.shape[1]) for lab in labels])
        per_pixel = per_pixel / (sizes.to(values.dtype) * channels).gather(1, labels.flatten(1)).view(labels.shape)
    return per_pixel.unsqueeze(1).expand(-1, channels, -1, -1).contiguous()
