"""DeepLIFT (rescale rule) and DeepLIFT-SHAP, for every activation a model uses."""

from __future__ import annotations

import warnings

import torch

from ...core.errors import CnnlensWarning
from ...engine import Context, sum_per_row
from .._base import Method
from .._gradient_modes import RescaleMode
from .._precision import tolerance, working
from .._registry import register

T = torch.Tensor


def checked(delta: T, gap: T, base: float = 1e-3, layer: str | None = None, scores: T | None = None) -> T:
    """Warn when attributions do not add up to f(x) - f(baseline): the rescale rule did not cover the model
    (or, for attributions at a ``layer``, some paths bypass the layer).

    The tolerance is ``base`` relative to ``|f(x) - f(baseline)|``, or eight rounding units of a float16/bfloat16
    model if that is more (its own rounding). ``scores`` (f(x)): a delta within 16 rounding units of them is
    rounding (an image equal to its baseline has f(x) - f(baseline) = 0 up to rounding, and no error)."""
    miss = working(delta).abs()
    if scores is not None:
        miss = (miss - 16 * torch.finfo(scores.dtype).eps * working(scores).abs()).clamp(min=0)
    rel = miss / working(gap).abs().clamp(min=1e-12)
    if (rel > tolerance(delta.dtype, base)).any():
        bypass = "" if layer is None else f", or values skip layer {layer} (a residual connection around it)"
        warnings.warn(
            f"DeepLIFT attributions miss f(x) - f(baseline) by up to {float(rel.max()):.1%}: the model uses "
            f"operations the rescale rule does not cover (e.g. products of activations as in squeeze-excitation, "
            f"softmax or normalization inside the model){bypass}, so the attributions are approximate there; "
            f"see .delta",
            CnnlensWarning,
            stacklevel=5,
        )
    return delta


@register
class DeepLift(Method):
    name = "deeplift"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    category = "gradient"
    summary = "DeepLIFT rescale rule: secant slopes from the baseline; attributions sum to f(x) - f(baseline)."
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        b = ctx.backward(ctx.inputs, ctx.owners(), mode=RescaleMode(), reference=baseline)
        assert b.grad is not None and b.reference_scores is not None
        attr = (ctx.inputs - baseline) * b.grad
        gap = ctx.target_scores() - b.reference_scores  # the baselines were scored in the same passes
        return attr, checked(sum_per_row(attr) - gap, gap, scores=ctx.target_scores())


@register
class DeepLiftShap(Method):
    name = "deeplift_shap"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    category = "gradient"
    summary = "DeepLIFT averaged over a baseline distribution (approximates SHAP values)."
    needs_baseline = "distribution"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        x, k = ctx.inputs, baseline.shape[1]
        refs = baseline.flatten(0, 1)
        owners = ctx.owners(k)
        b = ctx.backward(x.repeat_interleave(k, 0), owners, mode=RescaleMode(), reference=refs)
        assert b.grad is not None and b.reference_scores is not None
        attr = ((x.repeat_interleave(k, 0) - refs) * b.grad).view(baseline.shape).mean(1)
        gap = ctx.target_scores() - b.reference_scores.view(-1, k).mean(1)  # scored in the same passes
        return attr, checked(sum_per_row(attr) - gap, gap, scores=ctx.target_scores())
