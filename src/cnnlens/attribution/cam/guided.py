"""Guided Grad-CAM: guided backprop (with the ReLU6-aware rules) times the upsampled Grad-CAM."""

from __future__ import annotations

import torch

from ...engine import Context
from .._gradient_modes import GENERALIZE, GuidedMode
from .._layers import LAYERS
from .._registry import register
from .gradient_weighted import GradCam

T = torch.Tensor


@register
class GuidedGradCam(GradCam):
    name = "guided_grad_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Guided backprop times the upsampled Grad-CAM: fine detail, class-discriminative."
    output = "input"
    params = {"layer": LAYERS, "generalize": GENERALIZE}

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        cam, _ = super().compute(ctx, baseline)
        _, guided = ctx.gradients(ctx.inputs, ctx.owners(), mode=GuidedMode(self.options["generalize"]))
        return guided * cam, None
