"""Layer DeepLIFT, layer DeepLIFT-SHAP and layer GradientSHAP: differences from references at a layer."""

from __future__ import annotations

import torch

from ...core.options import integer, number
from ...engine import Context, sum_per_row
from .._gradient_modes import RescaleMode
from .._registry import register
from ..gradient.deeplift import checked
from ._base import LayerMethod

T = torch.Tensor


def _rescaled(ctx: Context, layer: torch.nn.Module, x: T, refs: T, owner: T) -> tuple[T, T, T, T]:
    """``(layer output of x, of the references, DeepLIFT multipliers at the layer, the references' scores)`` for
    rows paired with references: the rescale rule on every activation after the layer, a forward pass of each
    reference and one of each row with its backward pass."""
    b = ctx.backward(x, owner, mode=RescaleMode(), reference=refs, layers=[layer], input_grad=False)
    assert b.reference_scores is not None
    return b.outputs[0], b.reference_outputs[0], b.layer_grads[0], b.reference_scores


@register
class LayerDeepLift(LayerMethod):
    name = "layer_deeplift"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "DeepLIFT (rescale rule) at the layer: (output - its value on the baseline) x the multipliers."
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        """Shrikumar et al. 2017, as Captum's ``LayerDeepLift``: attributions sum to ``f(x) - f(baseline)`` when
        every path from the input to the output goes through the layer (a warning says when they do not)."""
        assert baseline is not None
        _, layer = self.target_layer(ctx)
        a, a0, m, ref_scores = _rescaled(ctx, layer, ctx.inputs, baseline, ctx.owners())
        attr = (a - a0) * m
        gap = ctx.target_scores() - ref_scores
        ctx.info["activations"] = a
        return attr, checked(sum_per_row(attr) - gap, gap, layer=ctx.info["layer"], scores=ctx.target_scores())


@register
class LayerDeepLiftShap(LayerMethod):
    name = "layer_deeplift_shap"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Layer DeepLIFT averaged over a baseline distribution (approximates SHAP values of the layer's units)."
    needs_baseline = "distribution"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        _, layer = self.target_layer(ctx)
        k = baseline.shape[1]
        refs = baseline.flatten(0, 1)
        a, a0, m, ref_scores = _rescaled(ctx, layer, ctx.inputs.repeat_interleave(k, 0), refs, ctx.owners(k))
        attr = ((a - a0) * m).view(ctx.n, k, *a.shape[1:]).mean(1)
        gap = ctx.target_scores() - ref_scores.view(-1, k).mean(1)
        ctx.info["activations"] = a[::k]
        return attr, checked(sum_per_row(attr) - gap, gap, layer=ctx.info["layer"], scores=ctx.target_scores())


@register
class LayerGradientShap(LayerMethod):
    name = "layer_gradient_shap"
    invariances = frozenset({"shift", "negation", "baseline_zero"})
    summary = "Expected gradients at the layer: gradients at random input-path points x (output - its baseline value)."
    params = {
        **LayerMethod.params,
        "samples": integer(20, "baseline draws (each with its own path point) per image"),
        "stdev": number(0.0, "Gaussian noise added to the inputs, in input units"),
    }
    needs_baseline = "distribution"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T | None]:
        """The draws of ``gradient_shap`` (noise, a baseline, a path point alpha, per image and sample); the
        gradient is taken at the layer for the input-space point ``ref + alpha (noisy - ref)`` and multiplied by
        ``layer(noisy) - layer(ref)`` (Captum's ``LayerGradientShap``). No delta with noise."""
        assert baseline is not None
        _, layer = self.target_layer(ctx)
        x, s = ctx.inputs, self.options["samples"]
        b, k = baseline.shape[:2]
        shape = (-1, *[1] * (x.dim() - 1))
        noise = ctx.randn(b * s, *x.shape[1:]) * self.options["stdev"]
        pick = ctx.randint(k, b * s)
        alpha = ctx.rand(b * s)
        owners = ctx.owners(s)
        noisy = x.repeat_interleave(s, 0) + noise
        refs = baseline[owners, pick]
        grads = ctx.backward(refs + alpha.view(shape) * (noisy - refs), owners, layers=[layer], input_grad=False)
        pairs, which = torch.unique(owners * k + pick, return_inverse=True)
        ref_acts = ctx.layer_activations(layer, baseline.flatten(0, 1)[pairs])[which]
        if self.options["stdev"] > 0:
            noisy_acts = ctx.layer_activations(layer, noisy)
        else:  # no noise: every sample of an image starts from the image itself
            noisy_acts = ctx.layer_activations(layer, x).repeat_interleave(s, 0)
        attr = ((noisy_acts - ref_acts) * grads.layer_grads[0]).view(b, s, *ref_acts.shape[1:]).mean(1)
        if self.options["stdev"] > 0:
            return attr, None
        ref_scores = ctx.scores(baseline.flatten(0, 1)[pairs], pairs // k)[which]
        gap = ctx.target_scores() - ref_scores.view(b, s).mean(1)
        return attr, sum_per_row(attr) - gap
