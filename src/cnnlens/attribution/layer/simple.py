"""One pass each: the layer's activation, its gradient, gradient x activation, Grad-CAM at layer resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.options import flag
from ...engine import Context
from .._registry import register
from ..cam._base import check_spatial
from ._base import LayerMethod

T = torch.Tensor


def _acts_and_grads(ctx: Context, method: LayerMethod) -> tuple[T, T]:
    """The layer's output for the inputs and the explained score's gradient w.r.t. it (the backward pass stops
    at the layer); the same passes give the logits."""
    _, layer = method.target_layer(ctx)
    b = ctx.backward(ctx.inputs, ctx.owners(), layers=[layer], input_grad=False)
    ctx.info["activations"] = b.outputs[0]
    return b.outputs[0], b.layer_grads[0]


@register
class LayerActivation(LayerMethod):
    name = "layer_activation"
    invariances = frozenset({"shift", "unsigned", "batch"})
    summary = "The layer's output itself (what each unit computes for the image; no class involved)."

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        _, layer = self.target_layer(ctx)
        acts = ctx.layer_outputs([layer])[0]
        ctx.info["activations"] = acts
        return acts, None


@register
class LayerGradient(LayerMethod):
    name = "layer_gradient"
    invariances = frozenset({"shift", "negation", "batch"})
    summary = "Gradient of the target score w.r.t. the layer's output (signed)."

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        return _acts_and_grads(ctx, self)[1], None


@register
class LayerGradientXActivation(LayerMethod):
    name = "layer_gradient_x_activation"
    invariances = frozenset({"shift", "negation", "batch"})
    summary = "The layer's output times the target score's gradient w.r.t. it (first-order contribution per unit)."

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        acts, grads = _acts_and_grads(ctx, self)
        return acts * grads, None


@register
class LayerGradCam(LayerMethod):
    name = "layer_grad_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Grad-CAM at the layer's resolution: channels weighted by their mean gradient, summed (B, 1, h, w)."
    output = "layer_map"
    params = {**LayerMethod.params, "relu": flag(True, "keep the positive evidence only (Selvaraju et al.)")}

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        acts, grads = _acts_and_grads(ctx, self)
        check_spatial(ctx.info["layer"], acts)
        cam = (grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True)
        return (F.relu(cam) if self.options["relu"] else cam), None
