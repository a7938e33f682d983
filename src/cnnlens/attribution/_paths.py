"""Path integrals of gradients along straight paths, with a fixed quadrature or adaptively to a completeness target.

Integrated gradients, layer integrated gradients, neuron integrated gradients and layer conductance all integrate
``grad f`` along straight paths ``start + alpha (end - start)``. The integrand ``h(alpha) = (end - start) . grad f``
integrates exactly to ``f(end) - f(start)``, so the completeness error of an estimate is known at every step:
the adaptive mode refines the path where ``h`` varies most until that error is small enough.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._errors import CnnlensError, CnnlensWarning
from .._options import choice, integer, number
from ._context import Rows

T = torch.Tensor
QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
Gradients = Callable[[Rows, T, T], T | tuple[T, T]]
"""``(points (N rows, made on demand), path index (N,), alpha (N,)) -> gradients of f at the points (N, ...)``, or
the pair
``(gradients, extra (N,))`` where ``extra`` is the rest of ``d f / d alpha`` at the points (the flow through
values that move with the path but are not attributed): the adaptive mode counts it in the completeness error."""

PATH_OPTIONS = {
    "steps": integer(50, "path points (quadrature nodes) per image"),
    "quadrature": choice("gausslegendre", QUADRATURES, "how the path integral is approximated"),
    "tolerance": number(
        None, "adaptive mode: refine until |delta| <= tolerance x |f(x) - f(baseline)|", open_min=True, none=True
    ),
    "max_passes": integer(2048, "adaptive mode: most model inputs per image", minimum=4),
}


@functools.lru_cache(maxsize=32)
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


def _points(start: T, diff: T, path: T, alpha: T) -> Rows:
    """The path points, made a chunk at a time."""

    def make(sl: slice) -> T:
        return start[path[sl]] + alpha[sl].view(-1, *[1] * (start.dim() - 1)) * diff[path[sl]]

    return Rows(len(path), make)


def integrate(
    gradients: Gradients,
    start: T,
    end: T,
    gap: T,
    options: dict[str, Any],
    group: T | None = None,
    name: str = "integrated_gradients",
) -> tuple[T, dict[str, Any]]:
    """``(end - start) * integral of grad f`` along every path ``p`` (``start``, ``end``: ``(P, ...)``).

    ``gap``: the exact integral ``f(end) - f(start)`` per group of paths (``group[p]``; default: one path per
    group), used by the adaptive mode (``options["tolerance"]``). ``options``: ``steps`` and ``quadrature`` of the
    fixed mode, ``tolerance`` and ``max_passes`` (rows per group) of the adaptive mode. Returns the integrals and
    an info dict (adaptive mode: ``passes_per_image`` and ``intervals_per_image``).
    """
    diff = end - start
    p = start.shape[0]
    if options.get("tolerance") is None:
        alphas, weights = quadrature(options["quadrature"], options["steps"])
        s = len(alphas)
        path = torch.arange(p, device=start.device).repeat_interleave(s)
        alpha = torch.tensor(alphas, dtype=start.dtype, device=start.device).repeat(p)
        grads = _split(gradients(_points(start, diff, path, alpha), path, alpha))[0].view(p, s, *start.shape[1:])
        w = torch.tensor(weights, dtype=start.dtype, device=start.device).view(1, -1, *[1] * (start.dim() - 1))
        return diff * (grads * w).sum(1), {}
    group = torch.arange(p, device=start.device) if group is None else group
    return _adaptive(gradients, start, end, diff, gap, group, options, name)


def _split(out: T | tuple[T, T]) -> tuple[T, T | None]:
    return out if isinstance(out, tuple) else (out, None)


_GL2 = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))  # 2-point Gauss-Legendre on [0, 1]


def _adaptive(
    gradients: Gradients, start: T, end: T, diff: T, gap: T, group: T, options: dict, name: str
) -> tuple[T, dict[str, Any]]:
    """Adaptive interval bisection with 2-point Gauss-Legendre on each interval.

    Each round splits the quarter of each unconverged group's intervals where ``h`` varies most, until
    ``|delta| <= tolerance * |gap|`` or the group's ``max_passes`` are spent (the first round uses ``steps``
    nodes per path, at least 2).
    """
    tol, budget = float(options["tolerance"]), int(options["max_passes"])
    groups = group.tolist()
    g_count = gap.shape[0]
    paths_of = [[i for i, g in enumerate(groups) if g == k] for k in range(g_count)]
    start_rows = 2 if max(len(ps) for ps in paths_of) == 1 else 0  # one path: f(x), f(x0) count in the budget
    used = [start_rows] * g_count
    n0 = [max(1, min(options["steps"], budget - start_rows) // 2 // max(1, len(ps))) for ps in paths_of]
    # per group: intervals [lo, hi, S (scalar integral), E (variation), V (integral of the gradient), path]
    intervals: list[list[list]] = [[] for _ in range(g_count)]
    pending = [[(pp, i / n0[k], (i + 1) / n0[k]) for pp in ps for i in range(n0[k])] for k, ps in enumerate(paths_of)]
    total = torch.zeros_like(start)
    rel = torch.full((g_count,), math.inf)
    while any(pending):
        paths, alphas = [], []
        for todo in pending:
            for pp, lo, hi in todo:
                for t in _GL2:
                    paths.append(pp)
                    alphas.append(lo + t * (hi - lo))
        path = torch.tensor(paths, device=start.device)
        alpha = torch.tensor(alphas, dtype=start.dtype, device=start.device)
        grads, extra = _split(gradients(_points(start, diff, path, alpha), path, alpha))
        h = (grads * diff[path]).flatten(1).sum(1) + (0 if extra is None else extra)
        k = 0
        for g, todo in enumerate(pending):
            for pp, lo, hi in todo:
                half = (hi - lo) / 2
                v = half * (grads[k] + grads[k + 1])
                s, e = half * (h[k] + h[k + 1]).item(), half * abs((h[k] - h[k + 1]).item())
                intervals[g].append([lo, hi, s, e, v, pp])
                total[pp] += v
                used[g] += 2
                k += 2
        pending = [[] for _ in range(g_count)]
        for g in range(g_count):
            err = sum(iv[2] for iv in intervals[g]) - gap[g].item()
            rel[g] = abs(err) / max(abs(gap[g].item()), 1e-12)
            if rel[g] <= tol:
                continue
            intervals[g].sort(key=lambda iv: iv[3])
            n_split = min(max(1, len(intervals[g]) // 4), (budget - used[g]) // 4)
            for _ in range(n_split):
                lo, hi, _s, _e, v, pp = intervals[g].pop()
                total[pp] -= v
                pending[g] += [(pp, lo, (lo + hi) / 2), (pp, (lo + hi) / 2, hi)]
    if (rel > tol).any():
        worst = int(rel.argmax())
        warnings.warn(
            f"{name} did not reach tolerance {tol} within max_passes={budget} for {int((rel > tol).sum())} "
            f"image(s) (worst: image {worst}, |delta| = {rel[worst]:.3g} x |f(x) - f(baseline)|); raise max_passes "
            f"or check the delta",
            CnnlensWarning,
            stacklevel=5,
        )
    info = {"passes_per_image": used, "intervals_per_image": [len(iv) for iv in intervals]}
    return diff * total, info
