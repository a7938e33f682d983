"""Integrated gradients with a choice of quadrature, and an adaptive mode that stops at a completeness target."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...engine import Context, sum_per_row
from .._base import Method
from .._paths import PATH_OPTIONS, QUADRATURES, integrate, quadrature, simpson_adaptive
from .._registry import register

if TYPE_CHECKING:
    from ...engine import Rows

T = torch.Tensor
__all__ = ["QUADRATURES", "IntegratedGradients", "integrated_gradients", "quadrature"]


@register
class IntegratedGradients(Method):
    name = "integrated_gradients"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    category = "gradient"
    summary = "Path integral of gradients from a baseline; adaptive mode refines until completeness holds."
    params = dict(PATH_OPTIONS)
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        return integrated_gradients(ctx, baseline, self.options, self.name)


def integrated_gradients(ctx: Context, baseline: T, options: dict, name: str) -> tuple[T, T]:
    """``(attributions, delta)`` of integrated gradients (Sundararajan et al. 2017) from ``baseline`` to the
    context's inputs, whatever they are (model inputs, a layer's activations) and whatever score is explained.

    Adaptive mode (``options["tolerance"]``): composite Simpson panels bisected where their own completeness
    error (known exactly: the gradient passes give f at every node) is largest, until ``|delta|`` and the sum of
    the panels' absolute errors are within ``tolerance * |f(x) - f(baseline)|`` (``info["passes_per_image"]``).
    """
    f_x, f_x0 = ctx.target_scores(), ctx.scores(baseline, ctx.owners())
    gap = f_x - f_x0
    if options.get("tolerance") is not None:
        attr, info = simpson_adaptive(
            lambda points, path, alpha: ctx.gradients(points, path), baseline, ctx.inputs, f_x0, f_x, options, name
        )
        ctx.info.update(info)
        return attr, sum_per_row(attr) - gap

    def gradients(points: Rows, path: T, alpha: T) -> T:
        return ctx.gradients(points, path)[1]

    attr, info = integrate(gradients, baseline, ctx.inputs, gap, options, name=name)
    ctx.info.update(info)
    return attr, sum_per_row(attr) - gap
