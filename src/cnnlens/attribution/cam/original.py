"""CAM (Zhou et al. 2016): for networks ending in global average pooling + one linear layer."""

from __future__ import annotations

import torch
from torch import nn

from ...core.errors import CnnlensError, say
from ...engine import Context
from ...models import class_rows
from .._precision import tolerance, working
from .._registry import register
from ._base import CamMethod

T = torch.Tensor


def _last(model: nn.Module, kind: type) -> nn.Module | None:
    found = [m for m in model.modules() if isinstance(m, kind)]
    return found[-1] if found else None


@register
class Cam(CamMethod):
    name = "cam"
    summary = "CAM: the last linear layer's class weights applied to the feature map that is average-pooled."
    uses_gradients = False
    relu = False

    def target_layers(self, ctx: Context) -> tuple[list[str], list[nn.Module], bool]:
        if self.options["layer"] is not None:
            return super().target_layers(ctx)
        pool = _last(ctx.model, nn.AdaptiveAvgPool2d)
        if pool is None or pool.output_size not in (1, (1, 1)):
            raise CnnlensError(
                "cam needs a network that ends in global average pooling (nn.AdaptiveAvgPool2d(1)) and one "
                "nn.Linear; this model has no such pooling module. Pass "
                + say("layer=", "--set layer=NAME")
                + " (the feature map that is pooled) or use grad_cam, which equals CAM on such networks and works "
                "on any"
            )
        return ["input of the global average pooling"], [pool], True

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        linear = _last(ctx.model, nn.Linear)
        if not isinstance(linear, nn.Linear) or linear.in_features != acts.shape[1]:
            raise CnnlensError(
                f"cam needs the feature map's {acts.shape[1]} channels to be average-pooled straight into the last "
                f"nn.Linear layer; this model has {'no linear layer' if linear is None else 'another one'}. "
                f"Use grad_cam instead"
            )
        w = working(linear.weight)
        pooled = working(acts).mean((2, 3))
        expected = pooled @ w.T + (0 if linear.bias is None else working(linear.bias))
        logits = working(ctx.logits)
        tol = tolerance(acts.dtype, 1e-4)  # float16/bfloat16: the model's own rounding, relative to its terms
        scale = max(float(logits.abs().max()), float((pooled.abs() @ w.abs().T).max()) if tol > 1e-4 else 0.0)
        if not torch.allclose(expected, logits, rtol=tol, atol=tol * scale):
            raise CnnlensError(
                "the model's logits are not its last linear layer applied to the global average of this feature "
                "map, so CAM's class weights do not explain them; use grad_cam (any architecture) instead"
            )
        if ctx.targets is None:
            raise CnnlensError("cam explains class logits: give class indices as target, not a callable")
        weights = class_rows(linear.weight)[ctx.targets]  # a one-logit model's class 0 is the negated logit
        return (weights[:, :, None, None] * acts).sum(1, keepdim=True)
