"""RISE: the score-weighted average of random smooth masks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...core.options import integer, number
from ...engine import Context
from .._registry import register
from ._common import SegmentMethod, scores

T = torch.Tensor


@register
class Rise(SegmentMethod):
    name = "rise"
    invariances = frozenset({"negation", "batch"})
    summary = "RISE: average of random upsampled masks weighted by the score of the image they keep."
    params = {
        "samples": integer(500, "random masks"),
        "cells": integer(7, "mask grid cells per side before upsampling"),
        "p": number(0.5, "probability of keeping a cell", maximum=1.0, open_min=True),
    }

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        """``sum_n f(b + m_n (x - b)) m_n / (N p)`` with ``m_n`` a ``cells x cells`` random binary grid (keep
        probability ``p``) bilinearly upsampled and randomly shifted (Petsiuk et al., 2018); the same masks for
        every image, the same map in every channel. Passes: ``B + K x B x samples``."""
        assert baseline is not None
        x = ctx.inputs
        b, c, h, w = x.shape
        n, cells, p = self.options["samples"], self.options["cells"], float(self.options["p"])
        ch, cw = math.ceil(h / cells), math.ceil(w / cells)
        grids = (ctx.rand(n, 1, cells, cells) < p).to(x.dtype)
        shifts = ctx.randint(ch * cw, n).tolist()

        def masks(idx: list[int]) -> T:
            up = F.interpolate(grids[idx], size=((cells + 1) * ch, (cells + 1) * cw), mode="bilinear")
            return torch.stack(
                [up[k, :, s // cw : s // cw + h, s % cw : s % cw + w] for k, s in enumerate(shifts[i] for i in idx)]
            )

        owner, which = ctx.owners(n), torch.arange(n, device=x.device).repeat(b)
        total = torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device)
        for base in baseline.unbind(1):

            def build(sl: slice, base: T = base) -> T:
                o, m = owner[sl], masks(which[sl].tolist())
                return base[o] + m * (x[o] - base[o])

            s = scores(ctx, b * n, build, owner, self.name).view(b, n)
            for start in range(0, n, 64):
                idx = list(range(start, min(n, start + 64)))
                total += torch.einsum("bn,nchw->bchw", s[:, idx], masks(idx))
        ctx.info["masks_used"] = n
        return (total / (n * p * baseline.shape[1])).expand(-1, c, -1, -1).contiguous(), None
