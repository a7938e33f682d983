"""GradientSHAP (expected gradients): gradients at random points between noisy inputs and random baselines."""

from __future__ import annotations

import torch

from ...core.options import integer, number
from ...engine import Context, sum_per_row
from .._base import Method
from .._registry import register

T = torch.Tensor


@register
class GradientShap(Method):
    name = "gradient_shap"
    invariances = frozenset({"shift", "negation", "baseline_zero"})
    category = "gradient"
    summary = "Expected gradients: baselines drawn from a distribution, uniform path points, optional noise."
    params = {
        "samples": integer(20, "baseline draws (each with its own path point) per image"),
        "stdev": number(0.0, "Gaussian noise added to the inputs, in input units"),
    }
    needs_baseline = "distribution"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T | None]:
        """Draws per image and sample (image-major): noise, a baseline index, a path point alpha ~ U(0, 1).

        ``delta`` compares ``sum(attr)`` with the mean of ``f(x) - f(baseline)`` over the drawn baselines: it
        goes to 0 as ``samples`` grows. With noise (``stdev > 0``) no delta is reported.
        """
        assert baseline is not None
        x, s = ctx.inputs, self.options["samples"]
        b, k = baseline.shape[:2]
        shape = (-1, *[1] * (x.dim() - 1))
        noise = ctx.randn(b * s, *x.shape[1:]) * self.options["stdev"]
        pick = ctx.randint(k, b * s)
        alpha = ctx.rand(b * s)
        owners = ctx.owners(s)
        noisy = x.repeat_interleave(s, 0) + noise
        refs = baseline[owners, pick]
        rows = refs + alpha.view(shape) * (noisy - refs)
        _, grads = ctx.gradients(rows, owners)
        attr = ((noisy - refs) * grads).view(b, s, *x.shape[1:]).mean(1)
        if self.options["stdev"] > 0:
            return attr, None
        pairs = torch.unique(owners * k + pick, return_inverse=True)
        ref_scores = ctx.scores(baseline.flatten(0, 1)[pairs[0]], pairs[0] // k)[pairs[1]]
        gap = ctx.target_scores() - ref_scores.view(b, s).mean(1)
        return attr, sum_per_row(attr) - gap
