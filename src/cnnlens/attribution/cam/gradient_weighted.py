"""CAMs that weight a layer's channels by gradients of the target score."""

from __future__ import annotations

import torch
from torch import nn

from ...engine import Context
from .._registry import register
from ._base import CamMethod

T = torch.Tensor


@register
class GradCam(CamMethod):
    name = "grad_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Channels weighted by their spatially averaged gradient (Selvaraju et al.), ReLU, upsampled."

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        return (grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True)


@register
class GradCamPP(CamMethod):
    name = "grad_cam_pp"
    invariances = frozenset({"shift", "batch"})
    summary = "Grad-CAM++: positive gradients weighted by second/third-order terms (exponential score)."

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        g2, g3 = grads**2, grads**3
        denom = 2 * g2 + acts.sum((2, 3), keepdim=True) * g3
        alpha = torch.where(grads != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0.0)
        weights = (alpha * grads.clamp(min=0)).sum((2, 3), keepdim=True)
        return (weights * acts).sum(1, keepdim=True)


@register
class XGradCam(CamMethod):
    name = "xgrad_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "XGrad-CAM: gradients averaged with the channel's own normalized activations as weights."

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        total = acts.sum((2, 3), keepdim=True)
        share = acts / torch.where(total != 0, total, torch.ones_like(total))
        return ((share * grads).sum((2, 3), keepdim=True) * acts).sum(1, keepdim=True)


@register
class LayerCam(CamMethod):
    name = "layer_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Layer-CAM: every activation weighted by its own positive gradient (finer maps, any layer)."

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        return (grads.clamp(min=0) * acts).sum(1, keepdim=True)


@register
class HiResCam(CamMethod):
    name = "hires_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "HiResCAM: gradient times activation summed over channels (faithful to the score), ReLU."

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        return (grads * acts).sum(1, keepdim=True)
