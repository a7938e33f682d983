"""Eigen-CAM and Eigen-Grad-CAM: the first principal direction of a layer's (gradient-weighted) activations."""

from __future__ import annotations

import torch
from torch import nn

from ...engine import Context
from .._precision import working
from .._registry import register
from ._base import CamMethod

T = torch.Tensor


def first_component(maps: T) -> T:
    """Project each image's (H*W, K) activation matrix on its first right singular vector -> (B, 1, H, W).

    The SVD fixes the direction only up to sign; the sign is chosen so that the projection correlates
    positively with the channel-summed activations (the map points where the layer is active, not away).
    """
    b, k, h, w = maps.shape
    m = working(maps).flatten(2).transpose(1, 2)  # (B, HW, K); the SVD in float32 for float16/bfloat16
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = m @ vh[:, 0, :, None]  # (B, HW, 1)
    total = m.sum(2, keepdim=True)
    sign = torch.sign(((proj - proj.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (proj * sign[:, None]).transpose(1, 2).reshape(b, 1, h, w).to(maps.dtype)


@register
class EigenCam(CamMethod):
    name = "eigen_cam"
    invariances = frozenset({"shift", "unsigned", "batch"})
    summary = "Eigen-CAM: first principal component of the layer's activations (class-agnostic, no gradients)."
    uses_gradients = False
    relu = False

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        return first_component(acts)


@register
class EigenGradCam(CamMethod):
    name = "eigen_grad_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Eigen-Grad-CAM: first principal component of gradient times activation (class-specific)."
    relu = False

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        return first_component(grads * acts)
