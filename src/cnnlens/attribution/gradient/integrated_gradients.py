"""Integrated gradients with a choice of quadrature, and an adaptive mode that stops at a completeness target."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..._errors import CnnlensError, CnnlensWarning
from ..._options import choice, integer, number
from .._base import Method
from .._context import Context, sum_per_row
from .._registry import register

T = torch.Tensor
QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(name: str, steps: int) -> tuple[list[float], list[float]]:
    """Nodes ``alpha`` in [0, 1] and weights (summing to 1) of a rule with ``steps`` nodes."""
    if name == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (x + 1)).tolist(), (0.5 * w).tolist()
    if steps < 2:
        raise CnnlensError(f"{name} needs steps >= 2; got {steps}")
    n = steps
    if name == "riemann_left":
        return [i / n for i in range(n)], [1 / n] * n
    if name == "riemann_right":
        return [(i + 1) / n for i in range(n)], [1 / n] * n
    if name == "riemann_middle":
        return [(i + 0.5) / n for i in range(n)], [1 / n] * n
    if name == "riemann_trapezoid":
        # Node spacing is 1/(n-1), so the weights are 1/(n-1) with halves at the ends (they sum to 1).
        w = [1 / (n - 1)] * n
        w[0] = w[-1] = 0.5 / (n - 1)
        return [i / (n - 1) for i in range(n)], w
    raise CnnlensError(f"unknown quadrature {name!r}; use one of {', '.join(QUADRATURES)}")


def path_gradients(ctx: Context, x: T, x0: T, alphas: T) -> tuple[T, T]:
    """Gradients at ``x0 + alpha (x - x0)`` for every image and its own alphas ``(B, S)``: ``(B, S, ...)``."""
    b, s = alphas.shape
    shape = (-1, *[1] * (x.dim() - 1))
    rows = x0.repeat_interleave(s, 0) + alphas.reshape(shape) * (x - x0).repeat_interleave(s, 0)
    scores, grads = ctx.gradients(rows, ctx.owners(s))
    return scores.view(b, s), grads.view(b, s, *x.shape[1:])


@register
class IntegratedGradients(Method):
    name = "integrated_gradients"
    category = "gradient"
    summary = "Path integral of gradients from a baseline; adaptive mode refines until completeness holds."
    params = {
        "steps": integer(50, "path points (quadrature nodes) per image"),
        "quadrature": choice("gausslegendre", QUADRATURES, "how the path integral is approximated"),
        "tolerance": number(
            None, "adaptive mode: refine until |delta| <= tolerance x |f(x) - f(baseline)|", open_min=True, none=True
        ),
        "max_passes": integer(2048, "adaptive mode: most model inputs per image", minimum=4),
    }
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        x = ctx.inputs
        gap = ctx.target_scores() - ctx.scores(baseline, ctx.owners())
        if self.options["tolerance"] is not None:
            attr = _adaptive(ctx, x, baseline, gap, self.options)
        else:
            alphas, weights = quadrature(self.options["quadrature"], self.options["steps"])
            a = torch.tensor(alphas, dtype=x.dtype, device=x.device).expand(x.shape[0], -1)
            _, grads = path_gradients(ctx, x, baseline, a)
            w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(1, -1, *[1] * (x.dim() - 1))
            attr = (x - baseline) * (grads * w).sum(1)
        return attr, sum_per_row(attr) - gap


_GL2 = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))  # 2-point Gauss-Legendre on [0, 1]


def _adaptive(ctx: Context, x: T, x0: T, gap: T, options: dict) -> T:
    """Adaptive interval bisection with 2-point Gauss-Legendre on each interval.

    The integrand along the path, ``h(a) = (x - x0) . grad f(x0 + a (x - x0))``, integrates exactly to
    ``f(x) - f(x0)``, so the completeness error of the current estimate is known at every round. Each round
    splits the quarter of each unconverged image's intervals where ``h`` varies most, until
    ``|delta| <= tolerance * |f(x) - f(x0)|`` or the image's ``max_passes`` are spent.
    """
    tol, budget = float(options["tolerance"]), int(options["max_passes"])
    b = x.shape[0]
    diff = x - x0
    n0 = max(1, min(options["steps"], budget - 2) // 2)  # the first round stays within max_passes too
    # per image: intervals as [lo, hi, S (scalar integral), E (variation), V (vector integral)]
    intervals: list[list[list]] = [[] for _ in range(b)]
    pending = [[(i / n0, (i + 1) / n0) for i in range(n0)] for _ in range(b)]
    total = torch.zeros_like(x)
    used = [2] * b  # f(x) and f(x0)
    rel = torch.full((b,), math.inf)
    while any(pending):
        owners, alphas = [], []
        for i, todo in enumerate(pending):
            for lo, hi in todo:
                for t in _GL2:
                    owners.append(i)
                    alphas.append(lo + t * (hi - lo))
        own = torch.tensor(owners, device=x.device)
        rows = x0[own] + torch.tensor(alphas, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1) * diff[own]
        _, grads = ctx.gradients(rows, own)
        h = sum_per_row(grads * diff[own])
        k = 0
        for i, todo in enumerate(pending):
            for lo, hi in todo:
                half = (hi - lo) / 2
                v = half * (grads[k] + grads[k + 1])
                s, e = half * (h[k] + h[k + 1]).item(), half * abs((h[k] - h[k + 1]).item())
                intervals[i].append([lo, hi, s, e, v])
                total[i] += v
                used[i] += 2
                k += 2
        pending = [[] for _ in range(b)]
        for i in range(b):
            err = sum(iv[2] for iv in intervals[i]) - gap[i].item()
            rel[i] = abs(err) / max(abs(gap[i].item()), 1e-12)
            if rel[i] <= tol:
                continue
            intervals[i].sort(key=lambda iv: iv[3])
            n_split = min(max(1, len(intervals[i]) // 4), (budget - used[i]) // 4)
            for _ in range(n_split):
                lo, hi, _s, _e, v = intervals[i].pop()
                total[i] -= v
                pending[i] += [(lo, (lo + hi) / 2), ((lo + hi) / 2, hi)]
    if (rel > tol).any():
        worst = int(rel.argmax())
        warnings.warn(
            f"integrated_gradients did not reach tolerance {tol} within max_passes={budget} for "
            f"{int((rel > tol).sum())} image(s) (worst: image {worst}, |delta| = {rel[worst]:.3g} x "
            f"|f(x) - f(baseline)|); raise max_passes or check the delta",
            CnnlensWarning,
            stacklevel=4,
        )
    ctx.info["passes_per_image"] = used
    ctx.info["intervals_per_image"] = [len(iv) for iv in intervals]
    return diff * total
