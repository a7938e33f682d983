"""SmoothGrad, SmoothGrad² and VarGrad over any method: the method runs once on a batch of noisy copies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.options import choice, defaults, integer, number
from ..engine import Context

T = torch.Tensor
KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
SMOOTH_OPTIONS = {
    "smooth": choice(None, KINDS, "average the method over noisy copies (SmoothGrad, its square, VarGrad)", none=True),
    "smooth_samples": integer(16, "noisy copies per image"),
    "smooth_std": number(0.15, "noise standard deviation as a fraction of each image's value range"),
}


def smoothed(
    compute: Callable[[Context, T | None], tuple[T, T | None]],
    options: dict[str, Any],
    ctx: Context,
    baseline: T | None,
) -> tuple[T, None]:
    """Average (or square-average, or variance of) the method over ``smooth_samples`` noisy copies per image.

    The noise is Gaussian with standard deviation ``smooth_std`` times each image's value range (max - min),
    as in the SmoothGrad paper. Targets are those of the clean images (a neuron stays the same neuron). No completeness delta is reported:
    the noisy copies have their own.
    """
    opts = {**defaults(SMOOTH_OPTIONS), **options}
    kind, n, std = opts["smooth"], opts["smooth_samples"], opts["smooth_std"]
    x = ctx.inputs
    b = x.shape[0]
    sigma = std * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    noise = ctx.randn(b * n, *x.shape[1:]) * sigma.repeat_interleave(n).view(-1, *[1] * (x.dim() - 1))
    noisy = x.repeat_interleave(n, 0) + noise
    sub = ctx.derive(noisy, n)
    attr, _ = compute(sub, None if baseline is None else baseline.repeat_interleave(n, 0))
    a = attr.view(b, n, *attr.shape[1:])
    if kind == "smoothgrad":
        return a.mean(1), None
    if kind == "smoothgrad_sq":
        return (a**2).mean(1), None
    return a.var(1, unbiased=False), None
