"""One backward pass each: saliency, input × gradient, guided backprop, deconvnet."""

from __future__ import annotations

import torch

from ...core.options import flag
from ...engine import Context
from .._base import Method
from .._gradient_modes import GENERALIZE, DeconvMode, GuidedMode
from .._registry import register

T = torch.Tensor


@register
class Saliency(Method):
    name = "saliency"
    invariances = frozenset({"shift", "unsigned", "batch"})
    category = "gradient"
    summary = "Gradient of the target score w.r.t. the input (absolute value unless abs=False)."
    params = {"abs": flag(True, "absolute value of the gradient (False: signed)")}

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        g = ctx.input_gradients()
        return (g.abs() if self.options["abs"] else g), None


@register
class InputXGradient(Method):
    name = "input_x_gradient"
    invariances = frozenset({"shift", "negation", "batch"})
    category = "gradient"
    summary = "Input times gradient (first-order Taylor contribution of each input value)."

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        return ctx.inputs * ctx.input_gradients(), None


@register
class GuidedBackprop(Method):
    name = "guided_backprop"
    invariances = frozenset({"shift", "batch"})
    category = "gradient"
    summary = "Gradient where ReLU-like activations pass only positive gradients (ReLU6 and hardtanh too)."
    params = {"generalize": GENERALIZE}

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        return ctx.input_gradients(GuidedMode(self.options["generalize"])), None


@register
class Deconvnet(Method):
    name = "deconvnet"
    invariances = frozenset({"shift", "batch"})
    category = "gradient"
    summary = "Backward pass where ReLU-like activations pass the positive part of the gradient, ungated."
    params = {"generalize": GENERALIZE}

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        return ctx.input_gradients(DeconvMode(self.options["generalize"])), None
