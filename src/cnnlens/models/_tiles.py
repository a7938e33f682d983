"""Boxes of changed regions and the tiles read from feature maps, for :mod:`cnnlens.models._incremental`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

T = torch.Tensor


@dataclass
class Patch:
    """A changed 4-d map: ``value`` (N, C, h, w) at rows ``y`` / columns ``x`` (N,); the clean value elsewhere.
    ``region`` (N, 4: top, bottom, left, right) bounds where it may differ from the clean value."""

    value: T
    y: T
    x: T
    region: T


def _capped(region: T, size: tuple[int, int], field: float | None) -> T:
    """Regions cut to ``field`` times the map's height and width around their centres (approximate mode)."""
    if field is None:
        return region
    out = region.clone()
    for axis, (a, b) in enumerate(((0, 1), (2, 3))):
        cap = max(1, math.ceil(field * size[axis]))
        extent = region[:, b] - region[:, a]
        cut = (extent - cap).clamp(min=0)
        out[:, a] = region[:, a] + cut // 2
        out[:, b] = torch.where(cut > 0, out[:, a] + cap, region[:, b])
    return out


def _union(regions: list[T]) -> T:
    big = torch.iinfo(torch.long).max
    out = None
    for r in regions:
        empty = (r[:, 1] <= r[:, 0]) | (r[:, 3] <= r[:, 2])
        r = r.clone()
        r[empty] = torch.tensor([big, -big, big, -big], device=r.device)
        out = r if out is None else torch.stack([torch.minimum(out[:, 0], r[:, 0]), torch.maximum(out[:, 1], r[:, 1]),
                                                 torch.minimum(out[:, 2], r[:, 2]), torch.maximum(out[:, 3], r[:, 3])], 1)  # fmt: skip
    assert out is not None
    return out


def _box(region: T, size: tuple[int, int]) -> tuple[tuple[T, T], tuple[int, int]] | None:
    """One box size for every row that holds each row's region, placed inside the map; ``None`` when all are empty."""
    h = int((region[:, 1] - region[:, 0]).clamp(min=0).max())
    w = int((region[:, 3] - region[:, 2]).clamp(min=0).max())
    if h == 0 or w == 0:
        return None
    h, w = min(h, size[0]), min(w, size[1])
    y = region[:, 0].clamp(0, size[0] - h)
    x = region[:, 2].clamp(0, size[1] - w)
    return (y, x), (h, w)


def _read(clean: T, patch: Patch | None, y: T, x: T, shape: tuple[int, int], fill: float) -> T:
    """Rows of a map, each cut at ``y`` / ``x`` to ``shape``: the patch where it lies, the clean value elsewhere and
    ``fill`` outside the map (N, C, h, w). Copied row by row as slices (plain memory copies: gathering with index
    tensors costs several times more on a CPU)."""
    h, w = shape
    if patch is not None and patch.value.shape[2:] == shape and torch.equal(patch.y, y) and torch.equal(patch.x, x):
        return patch.value  # the patch is the box asked for (1 x 1 convolutions, the larger operand of a sum)
    c = clean[0]
    channels, height, width = c.shape
    ys, xs = y.tolist(), x.tolist()
    inside = min(ys) >= 0 and min(xs) >= 0 and max(ys) + h <= height and max(xs) + w <= width
    layout = torch.channels_last if clean.dim() == 4 and not clean.is_contiguous() else torch.contiguous_format
    out = torch.empty((len(ys), channels, h, w), dtype=c.dtype, device=c.device, memory_format=layout)
    if not inside:
        out.fill_(fill)
    for r, (top, left) in enumerate(zip(ys, xs, strict=True)):
        _paste(out[r], c, top, left, 0, 0, height, width)
    if patch is not None:
        ph, pw = patch.value.shape[2:]
        for r, (top, left, py, px) in enumerate(zip(ys, xs, patch.y.tolist(), patch.x.tolist(), strict=True)):
            _paste(out[r], patch.value[r], top, left, py, px, min(ph, height - py), min(pw, width - px))
    return out


def _paste(out: T, src: T, top: int, left: int, sy: int, sx: int, sh: int, sw: int) -> None:
    """Copy into ``out`` (C, h, w), a box of the map at ``top`` / ``left``, the part of ``src`` (C, >= sh, >= sw),
    which lies on the map at ``sy`` / ``sx`` with size ``sh`` x ``sw``, that falls inside the box and the map."""
    h, w = out.shape[1:]
    a0, a1 = max(top, sy, 0), min(top + h, sy + sh)
    b0, b1 = max(left, sx, 0), min(left + w, sx + sw)
    if a1 > a0 and b1 > b0:
        out[:, a0 - top : a1 - top, b0 - left : b1 - left] = src[:, a0 - sy : a1 - sy, b0 - sx : b1 - sx]
