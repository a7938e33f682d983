"""Occlusion: slide a window over the image, replace it by the baseline, record how much the score drops."""

from __future__ import annotations

import math

import torch

from ..._options import value
from .._context import Context
from .._registry import register
from ._common import SegmentMethod, scores

T = torch.Tensor


def _pair(v: object) -> tuple[int, int] | None:
    """``(h, w)`` from an int or a pair of positive ints; ``None`` for anything else."""
    pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in pair):
        return None
    return pair  # type: ignore[return-value]


def windows(h: int, w: int, window: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Window boxes ``(top, bottom, left, right)``, row-major: ``ceil((H - h) / stride) + 1`` per axis, the
    last one cut at the border (the same windows as Captum's ``Occlusion``). A window larger than the image is
    cut to the image."""
    window = (min(window[0], h), min(window[1], w))
    ny = math.ceil((h - window[0]) / stride[0]) + 1
    nx = math.ceil((w - window[1]) / stride[1]) + 1
    return [
        (i * stride[0], min(h, i * stride[0] + window[0]), j * stride[1], min(w, j * stride[1] + window[1]))
        for i in range(ny)
        for j in range(nx)
    ]


@register
class Occlusion(SegmentMethod):
    name = "occlusion"
    summary = "Score drop when a sliding window (all channels) is replaced by the baseline; overlaps averaged."
    params = {
        "window": value(
            16, "occluded window, pixels", "a positive int or (height, width)", lambda v: _pair(v) is not None
        ),
        "stride": value(
            8, "step between windows, pixels", "a positive int or (height, width)", lambda v: _pair(v) is not None
        ),
    }

    def inpaint_mask(self) -> str:
        h, w = _pair(self.options["window"])  # type: ignore[misc]
        return f"grid:{h}x{w}"

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        """Each pixel gets the mean of ``f(x) - f(x with the window occluded)`` over the windows covering it
        (0 where none does, which only a stride longer than the window allows).

        Passes: ``B`` (the inputs) + ``B x windows x K`` (K baselines, averaged).
        """
        assert baseline is not None
        x = ctx.inputs
        b, _, h, w = x.shape
        boxes = windows(h, w, _pair(self.options["window"]), _pair(self.options["stride"]))  # type: ignore[arg-type]
        cover = torch.zeros(h, w, dtype=x.dtype, device=x.device)
        for t, bo, le, ri in boxes:
            cover[t:bo, le:ri] += 1
        fx = ctx.target_scores()
        n = len(boxes)
        owner = ctx.owners(n)
        total = torch.zeros_like(x)
        for base in baseline.unbind(1):

            def build(sl: slice, base: T = base) -> T:
                rows = x[owner[sl]].clone()
                for r, k in enumerate(range(sl.start, sl.stop)):
                    i, (t, bo, le, ri) = k // n, boxes[k % n]
                    rows[r, :, t:bo, le:ri] = base[i, :, t:bo, le:ri]
                return rows

            drop = (fx[owner] - scores(ctx, b * n, build, owner, self.name)).view(b, n)
            for j, (t, bo, le, ri) in enumerate(boxes):
                total[:, :, t:bo, le:ri] += drop[:, j].view(b, 1, 1, 1)
        ctx.info["windows"] = n
        # a stride longer than the window leaves pixels no window covers: they get 0
        return total / (cover.clamp(min=1) * baseline.shape[1]), None
