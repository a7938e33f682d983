"""Eigen-CAM and Eigen-Grad-CAM: the first principal direction of a layer's (gradient-weighted) activations."""

from __future__ import annotations

import torch
from torch import nn

from ...engine import Context
from .._precision import working
from .._registry import register
from ._base import CamMethod

T = torch.Tensor


SIGN_CONVENTION = (
    "the principal direction is oriented along the layer's mean activation vector (the map's mean over positions "
    "is positive; where that mean is 0, the side of larger magnitude is positive): a convention, since the SVD "
    "fixes the direction only up to sign, so the map is not evidence for or against a class"
)


def first_component(maps: T) -> T:
    """Project each image's (H*W, K) activation matrix on its first right singular vector -> (B, 1, H, W).

    Muhammad & Yeasin (2020): the activations are not centred (pytorch-grad-cam centres them; the two agree where
    every channel's spatial mean is 0). The SVD fixes the direction ``v`` only up to sign; ``v`` is oriented so
    that the projection's sum over positions, ``H*W * mean_activation . v``, is positive, i.e. along the mean
    activation vector. Where that sum is 0 to rounding (centred activations), the side of larger magnitude is
    positive (Seg-Eigen-CAM, Chung & Ying 2025, Eq. 13). The result does not depend on the sign the SVD returns,
    and is the same for activations ``A`` and ``-A``.
    """
    b, k, h, w = maps.shape
    m = working(maps).flatten(2).transpose(1, 2)  # (B, HW, K); the SVD in float32 for float16/bfloat16
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    proj = (m @ vh[:, 0, :, None])[..., 0]  # (B, HW)
    total = proj.sum(1)
    tied = total.abs() <= 1e-5 * proj.abs().sum(1)  # mean activation orthogonal to v: rounding decides nothing
    sign = torch.where(tied, torch.sign(proj.amax(1) + proj.amin(1)), torch.sign(total))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (proj * sign[:, None]).reshape(b, 1, h, w).to(maps.dtype)


@register
class EigenCam(CamMethod):
    name = "eigen_cam"
    invariances = frozenset({"shift", "unsigned", "batch"})
    summary = "Eigen-CAM: first principal component of the layer's activations (class-agnostic, no gradients)."
    uses_gradients = False
    relu = False

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        ctx.info["class_evidence"] = False  # drawn as a map of one sign, never as for/against a class
        ctx.info["sign"] = SIGN_CONVENTION
        return first_component(acts)


@register
class EigenGradCam(CamMethod):
    name = "eigen_grad_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Eigen-Grad-CAM: first principal component of gradient times activation (class-specific)."
    relu = False

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        assert grads is not None
        ctx.info["class_evidence"] = False
        ctx.info["sign"] = SIGN_CONVENTION.replace("activation vector", "gradient x activation vector")
        return first_component(grads * acts)
