"""DeepLIFT (rescale rule) and DeepLIFT-SHAP, for every activation a model uses."""

from __future__ import annotations

import torch

from .._base import Method
from .._context import Context, sum_per_row
from .._registry import register
from .._rules import RescaleMode

T = torch.Tensor


@register
class DeepLift(Method):
    name = "deeplift"
    category = "gradient"
    summary = "DeepLIFT rescale rule: secant slopes from the baseline; attributions sum to f(x) - f(baseline)."
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        grads = ctx.input_gradients(RescaleMode(), reference=baseline)
        attr = (ctx.inputs - baseline) * grads
        gap = ctx.select(ctx.logits, ctx.owners()) - ctx.scores(baseline, ctx.owners())
        return attr, sum_per_row(attr) - gap


@register
class DeepLiftShap(Method):
    name = "deeplift_shap"
    category = "gradient"
    summary = "DeepLIFT averaged over a baseline distribution (approximates SHAP values)."
    needs_baseline = "distribution"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        x, k = ctx.inputs, baseline.shape[1]
        refs = baseline.flatten(0, 1)
        owners = ctx.owners(k)
        _, grads = ctx.gradients(x.repeat_interleave(k, 0), owners, mode=RescaleMode(), reference=refs)
        attr = ((x.repeat_interleave(k, 0) - refs) * grads).view(baseline.shape).mean(1)
        ref_scores = ctx.scores(refs, owners).view(-1, k).mean(1)
        gap = ctx.select(ctx.logits, ctx.owners()) - ref_scores
        return attr, sum_per_row(attr) - gap
