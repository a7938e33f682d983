"""Occlusion: slide a window over the image, replace it by the baseline, record how much the score drops."""

from __future__ import annotations

import math

import torch

from ...core.errors import CnnlensError
from ...core.options import flag, number, value
from ...engine import Context
from .._registry import register
from ._common import SegmentMethod, scores
from ._drilldown import approximate_drops, report_error
from ._incremental import changed_scores, engine, incremental_option, window_inside

T = torch.Tensor


def _pair(v: object) -> tuple[int, int] | None:
    """``(h, w)`` from an int or a pair of positive ints; ``None`` for anything else."""
    pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in pair):
        return None
    return pair[0], pair[1]


def _size(v: object) -> tuple[int, int]:
    """``(h, w)`` of an option value its check (``_pair``) accepted."""
    pair = _pair(v)
    if pair is None:
        raise CnnlensError(f"expected a positive int or (height, width); got {v!r}")
    return pair


def windows(h: int, w: int, window: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Window boxes ``(top, bottom, left, right)``, row-major: ``ceil((H - h) / stride) + 1`` per axis, the
    last one cut at the border (the same windows as Captum's ``Occlusion``). A window larger than the image is
    cut to the image. A stride longer than the window (which Captum refuses) leaves pixels no window covers
    (they get 0), and the last start on an axis can lie past the border: that window would occlude nothing and
    is left out."""
    window = (min(window[0], h), min(window[1], w))
    ys = _starts(h, window[0], stride[0])
    xs = _starts(w, window[1], stride[1])
    return [(t, min(h, t + window[0]), le, min(w, le + window[1])) for t in ys for le in xs]


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts on one axis of ``size`` pixels: multiples of ``stride`` inside the image."""
    n = math.ceil((size - window) / stride) + 1
    return [i * stride for i in range(n) if i * stride < size]


@register
class Occlusion(SegmentMethod):
    name = "occlusion"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Score drop when a sliding window (all channels) is replaced by the baseline; overlaps averaged."
    params = {
        "window": value(
            16, "occluded window, pixels", "a positive int or (height, width)", lambda v: _pair(v) is not None
        ),
        "stride": value(
            8, "step between windows, pixels", "a positive int or (height, width)", lambda v: _pair(v) is not None
        ),
        "incremental": incremental_option(approximate=True),
        "field_threshold": number(
            1.0,
            "approximate mode: largest changed region, as a fraction of each feature map's side (1: no cut)",
            minimum=0.0,
            maximum=1.0,
            open_min=True,
        ),
        "drill_down": number(
            0.15,
            "approximate mode: fraction of the windows recomputed where the coarse map's ranks are least certain",
            minimum=0.0,
            maximum=1.0,
        ),
        "report_error": flag(False, "approximate mode: also run the exact mode and report the error in info"),
    }

    def inpaint_mask(self) -> str:
        h, w = _size(self.options["window"])
        return f"grid:{h}x{w}"

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        """Each pixel gets the mean of ``f(x) - f(x with the window occluded)`` over the windows covering it
        (0 where none does, which only a stride longer than the window allows).

        Passes: ``B`` (the inputs) + ``B x windows x K`` (K baselines, averaged) with full forward passes. With
        incremental inference (``incremental="exact"``, the default where the model traces) each occluded copy
        counts as the fraction of a full pass's multiply-adds it cost, plus one clean pass and one check row per
        image and baseline (``info["inference"]``, ``info["multiply_adds"]``). ``incremental="approximate"``
        (Nakandala et al., SIGMOD 2019): each changed region is cut to ``field_threshold`` of its feature map's
        side, and windows are computed in two stages, every other window on each axis first, then the
        ``drill_down`` fraction of all windows where the interpolated coarse map's ranks are least certain (how
        many windows' drops lie within the range of the coarse drops its interpolation reads; the others keep the
        interpolated value); ``report_error=True`` also runs the exact mode and reports the error in
        ``info["approximate_error"]``.
        """
        assert baseline is not None
        x = ctx.inputs
        b, _, h, w = x.shape
        boxes = windows(h, w, _size(self.options["window"]), _size(self.options["stride"]))
        cover = torch.zeros(h, w, dtype=x.dtype, device=x.device)
        for t, bo, le, ri in boxes:
            cover[t:bo, le:ri] += 1
        fx = ctx.target_scores()
        n = len(boxes)
        owner = ctx.owners(n)
        grid = torch.tensor(boxes, device=x.device).repeat(b, 1)
        mode = self.options["incremental"]
        eng = engine(ctx, mode, n)
        total = torch.zeros_like(x)
        for base in baseline.unbind(1):

            def build(sl: slice, base: T = base) -> T:
                rows = x[owner[sl]].clone()
                for r, k in enumerate(range(sl.start, sl.stop)):
                    i, (t, bo, le, ri) = k // n, boxes[k % n]
                    rows[r, :, t:bo, le:ri] = base[i, :, t:bo, le:ri]
                return rows

            drop = None
            if eng is not None and mode == "approximate":
                drop = approximate_drops(ctx, eng, base, boxes, self.options, self.name)
            elif eng is not None:
                s = changed_scores(ctx, eng, base, owner, grid, window_inside(grid), self.name)
                drop = None if s is None else (fx[owner] - s).view(b, n)
            if drop is None:
                drop = (fx[owner] - scores(ctx, b * n, build, owner, self.name)).view(b, n)
            for j, (t, bo, le, ri) in enumerate(boxes):
                total[:, :, t:bo, le:ri] += drop[:, j].view(b, 1, 1, 1)
        ctx.info["windows"] = n
        # a stride longer than the window leaves pixels no window covers: they get 0
        attr = total / (cover.clamp(min=1) * baseline.shape[1])
        if mode == "approximate" and self.options["report_error"] and ctx.info.get("inference") == "approximate":
            exact = type(self)(**{**self.options, "incremental": "exact", "report_error": False})
            report_error(ctx, attr, exact.compute, baseline)
        return attr, None
