"""Path integrals of gradients along straight paths, with a fixed quadrature or adaptively to a completeness target.

Integrated gradients, layer integrated gradients, neuron integrated gradients and layer conductance all integrate
``grad f`` along straight paths ``start + alpha (end - start)``. The integrand ``h(alpha) = (end - start) . grad f``
integrates exactly to ``f(end) - f(start)``, so the completeness error of an estimate is known at every step:
the adaptive mode refines the path where ``h`` varies most until that error is small enough.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..core.errors import CnnlensError, CnnlensWarning
from ..core.options import choice, integer, number
from ..engine import Rows

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
    "max_passes": integer(2048, "adaptive mode: most model inputs per image", minimum=5),
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
        weights = [1 / (n - 1)] * n
        weights[0] = weights[-1] = 0.5 / (n - 1)
        return [i / (n - 1) for i in range(n)], weights
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


Scored = Callable[[Rows, T, T], tuple[T, T]]
"""``(points, path index, alpha) -> (f at the points (N,), gradients of f at the points (N, ...))``."""


def simpson_adaptive(
    scored: Scored, start: T, end: T, f_start: T, f_end: T, options: dict[str, Any], name: str
) -> tuple[T, dict[str, Any]]:
    """Integrated gradients along one straight path per row of ``start``/``end``, refined until
    ``|delta| <= tolerance * |f(end) - f(start)|`` (``options``: ``steps``, ``tolerance``, ``max_passes``).

    Composite Simpson panels ``[a, m, b]`` (nodes at both ends and the middle) that are bisected where needed; a
    bisected panel keeps its three nodes and adds two (no gradient is computed twice). The gradient passes give
    ``f`` at every node too, so each panel's own error is known exactly: its Simpson sum of ``h(alpha) = (end -
    start) . grad f`` minus ``f(b) - f(a)``. A path is done when ``|delta|`` and the sum of its panels' absolute
    errors are both within ``tolerance * |gap|`` (no luck from errors that cancel). Each round bisects, in one
    batch for all paths, the panels with the largest errors until the rest sum to at most twice the tolerance. The
    first round has ``steps`` nodes (rounded up to an odd number, at most 17) on panels that are shorter near both
    ends of the path, where f often changes fastest; ``f(start)`` and ``f(end)`` (given) count in the ``max_passes``
    budget of each path as 2 passes. Every pass is a forward and backward pass of one row (no forward-only rows):
    ``info["passes_per_image"]`` is 2 plus the number of nodes; ``info["rounds"]`` counts the batched rounds.
    """
    tol, budget = float(options["tolerance"]), int(options["max_passes"])
    diff = end - start
    p = start.shape[0]
    gap = f_end - f_start
    room = budget - 2
    panels0 = max(1, min(int(options["steps"]) // 2, 8, (room - 1) // 2))  # steps rounded up to an odd count
    # per path: alpha -> (f, h, gradient); panels as (a, m, b)
    nodes: list[dict[float, tuple[float, float, T]]] = [{} for _ in range(p)]
    cuts = [(1 - math.cos(math.pi * i / panels0)) / 2 for i in range(panels0 + 1)]  # denser at both ends
    first = [(a, (a + b) / 2, b) for a, b in itertools.pairwise(cuts)]
    panels = [list(first) for _ in range(p)]
    todo = [sorted({t for pn in first for t in pn}) for _ in range(p)]
    rel = [math.inf] * p
    rounds = 0
    while any(todo):
        rounds += 1
        flat = [(i, t) for i, ts in enumerate(todo) for t in ts]
        path = torch.tensor([i for i, _ in flat], device=start.device)
        alpha = torch.tensor([t for _, t in flat], dtype=start.dtype, device=start.device)
        f, grads = scored(_points(start, diff, path, alpha), path, alpha)
        h = (grads * diff[path]).flatten(1).sum(1).tolist()
        for k, (i, t) in enumerate(flat):
            nodes[i][t] = (float(f[k]), h[k], grads[k])
        todo = [[] for _ in range(p)]
        for i in range(p):
            errors = [_panel_error(nodes[i], pn) for pn in panels[i]]
            g = max(abs(float(gap[i])), 1e-12)
            rel[i] = abs(sum(errors)) / g
            if rel[i] <= tol and sum(abs(e) for e in errors) <= tol * g:  # no luck from errors that cancel
                continue
            order = sorted(range(len(errors)), key=lambda j: -abs(errors[j]))
            rest = sum(abs(e) for e in errors)
            spare = (room - len(nodes[i])) // 2
            split = []
            for j in order[:spare]:
                split.append(j)
                rest -= abs(errors[j])
                if rest <= 2 * tol * g:  # bisected panels' errors shrink: leave the rest to later rounds
                    break
            for j in sorted(split, reverse=True):
                a, m, b = panels[i].pop(j)
                panels[i] += [(a, (a + m) / 2, m), (m, (m + b) / 2, b)]
                todo[i] += [(a + m) / 2, (m + b) / 2]
    total = torch.zeros_like(start)
    for i in range(p):
        for pn in panels[i]:
            (_, _, ga), (_, _, gm), (_, _, gb) = (nodes[i][t] for t in pn)
            total[i] += (pn[2] - pn[0]) / 6 * (ga + 4 * gm + gb)
    if max(rel) > tol:
        worst = max(range(p), key=lambda i: rel[i])
        warnings.warn(
            f"{name} did not reach tolerance {tol} within max_passes={budget} for {sum(r > tol for r in rel)} "
            f"image(s) (worst: image {worst}, |delta| = {rel[worst]:.3g} x |f(x) - f(baseline)|); raise max_passes "
            f"or check the delta",
            CnnlensWarning,
            stacklevel=5,
        )
    used = [2 + len(n) for n in nodes]
    info = {"passes_per_image": used, "intervals_per_image": [len(pn) for pn in panels], "rounds": rounds}
    return diff * total, info


def _panel_error(nodes: dict[float, tuple[float, float, T]], panel: tuple[float, float, float]) -> float:
    """Simpson's sum of ``h`` over one panel ``(a, m, b)`` minus its exact value ``f(b) - f(a)``."""
    (fa, ha, _), (_, hm, _), (fb, hb, _) = (nodes[t] for t in panel)
    return (panel[2] - panel[0]) / 6 * (ha + 4 * hm + hb) - (fb - fa)
