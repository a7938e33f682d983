"""Shapley values of segments: permutation sampling (paired) and KernelSHAP (exact once the budget allows)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from ...core.options import integer
from ...engine import Context
from .._registry import register
from ._common import SegmentMethod, coalition_scores, mask_option

T = torch.Tensor


def _pad(z: T, width: int) -> T:
    out = torch.zeros(z.shape[0], width, dtype=torch.bool, device=z.device)
    out[:, : z.shape[1]] = z
    return out


def evaluate_designs(ctx: Context, x: T, base: T, labels: T, designs: list[T], name: str) -> tuple[list[T], list[int]]:
    """Scores of every image's coalitions ``designs[i]`` (bool ``(N_i, S_i)``), in one batched run."""
    width = max(d.shape[1] for d in designs)
    z = torch.cat([_pad(d, width) for d in designs])
    owner = torch.cat([torch.full((len(d),), i, dtype=torch.long) for i, d in enumerate(designs)]).to(x.device)
    s = coalition_scores(ctx, x, base, labels, z.to(x.device), owner, name)
    sizes = [len(d) for d in designs]
    used = ctx.info.setdefault("coalitions", [0] * len(designs))
    ctx.info["coalitions"] = [u + n for u, n in zip(used, sizes, strict=True)]
    return list(s.split(sizes)), sizes


def _store(v: T, i: int, phi: T) -> None:
    v[i, : len(phi)] = phi


def all_coalitions(m: int) -> T:
    """Every coalition of ``m`` segments but the full one, as bool rows; row ``k`` is the bitmask ``k``."""
    k = torch.arange(2**m - 1)
    return (k[:, None] >> torch.arange(m)) & 1 == 1


def shapley_from_table(table: T, m: int) -> T:
    """Exact Shapley values from the value of every coalition (``table[k]``: the coalition with bitmask ``k``)."""
    k = torch.arange(2**m)
    size = ((k[:, None] >> torch.arange(m)) & 1).sum(1)
    f = [math.factorial(s) for s in range(m + 1)]
    weight = torch.tensor([f[s] * f[m - s - 1] / f[m] for s in range(m)], dtype=torch.float64)
    phi = torch.zeros(m, dtype=torch.float64)
    for j in range(m):
        without = k[(k >> j) & 1 == 0]
        phi[j] = (weight[size[without]] * (table[without | (1 << j)] - table[without])).sum()
    return phi


@register
class ShapleySampling(SegmentMethod):
    name = "shapley_sampling"
    invariances = frozenset({"shift", "negation", "baseline_zero"})
    summary = (
        "Shapley values by permutation sampling: paired (reversed) permutations, each coalition scored once, "
        "exact once the coalitions cover them all."
    )
    params = {
        "mask": mask_option("grid:32"),
        "samples": integer(25, "random permutations of the segments per image (rounded up to an even number)"),
    }
    has_delta = True
    spread = True

    def values(self, ctx: Context, x: T, base: T, labels: T, counts: list[int], fx: T) -> tuple[T, T]:
        """Marginal contributions averaged over ``n`` permutations per image, ``n`` = ``samples`` rounded up to an
        even number: random orders, each with its reverse (antithetic pairs, exact on games with pairwise
        interactions only). Every permutation's contributions sum to f(x) - f(baseline), so efficiency holds
        exactly. Coalitions shared by several permutations are scored once; f(x) comes from the inputs' pass.

        Whenever the scored coalitions are all ``2^S - 1`` (the full one is f(x)), the values are exact Shapley
        values, from the formula; and when ``1 + n (S - 1) >= 2^S - 1`` (the permutations could score every
        coalition) every coalition is scored directly. ``info["exact"]``: per image, whether the values are
        exact; ``info["permutations"]``: ``n``. Passes: ``B`` + the distinct coalitions (``info["coalitions"]``,
        at most ``max(1 + n (S - 1), 2^S - 1)`` per image and baseline)."""
        n = 2 * math.ceil(self.options["samples"] / 2)
        designs: list[T] = []
        plans: list[tuple[T, T] | None] = []  # (permutations, their coalitions), None when exact
        for m in counts:
            if m < 64 and 1 + n * (m - 1) >= 2**m - 1:
                designs.append(all_coalitions(m))
                plans.append(None)
                continue
            half = [torch.randperm(m, generator=ctx.generator) for _ in range(n // 2)]
            perms = torch.stack([p for q in half for p in (q, q.flip(0))])  # (n, m)
            rank = perms.argsort(1)
            prefix = rank[:, None, :] < torch.arange(m)[None, :, None]  # (n, m, m): before each position
            uniq, inv = torch.unique(prefix.reshape(-1, m), dim=0, return_inverse=True)
            designs.append(uniq)
            plans.append((perms, inv.view(n, m)))
        values, _ = evaluate_designs(ctx, x, base, labels, designs, self.name)
        v = torch.zeros(x.shape[0], max(counts), dtype=x.dtype, device=x.device)
        fb = torch.empty_like(fx)
        exact = []
        for i, (s, design, plan) in enumerate(zip(values, designs, plans, strict=True)):
            m = counts[i]
            exact.append(len(design) == 2**m - 1)  # every coalition scored: the formula, not the samples
            if exact[-1]:
                table = torch.empty(2**m, dtype=torch.float64)
                table[(design.long() << torch.arange(m)).sum(1)] = s.double().cpu()
                table[-1] = float(fx[i])
                _store(v, i, shapley_from_table(table, m).to(v))
                fb[i] = float(table[0])
                continue
            assert plan is not None
            perms, inv = plan
            chain = torch.cat([s[inv.to(s.device)], fx[i].expand(n, 1)], dim=1)  # (n, m + 1)
            marginal = chain.diff(dim=1)  # contribution of perms[p, k] at position k
            phi = torch.zeros(m, dtype=x.dtype, device=x.device)
            phi.index_add_(0, perms.flatten().to(x.device), marginal.flatten())
            _store(v, i, phi / n)
            fb[i] = chain[0, 0]
        before = ctx.info.get("exact", exact)  # several baselines: exact only if exact for each
        ctx.info.update(exact=[a and b for a, b in zip(before, exact, strict=True)], permutations=n)
        return v, fb


def kernel_design(m: int, budget: int, generator: torch.Generator) -> tuple[T, np.ndarray]:
    """Coalitions (bool ``(N, m)``, neither empty nor full) and their Shapley-kernel weights.

    Whole coalition sizes are enumerated first, from the outside in (sizes 1 and m-1, then 2 and m-2, ...), as
    long as the budget's share of the kernel mass covers the pair; the remaining budget samples the remaining
    sizes in complementary pairs, each draw weighted by the remaining mass over the draws (duplicates merged).
    With ``budget >= 2^m - 2`` every coalition is enumerated with its exact weight.
    """
    if m < 2:
        return torch.zeros(0, m, dtype=torch.bool), np.zeros(0)
    mass = {s: (m - 1) / (s * (m - s)) for s in range(1, m)}
    rows: list[tuple[int, ...]] = []
    weights: list[float] = []
    left, remaining = budget, sum(mass.values())
    todo = list(range(1, m))
    everything = 2**m - 2 if m < 62 else math.inf
    for s in range(1, m // 2 + 1):
        sizes = [s] if s == m - s else [s, m - s]
        count = math.comb(m, s) * len(sizes)
        pair_mass = sum(mass[t] for t in sizes)
        if count > left or (left * pair_mass / remaining < count and everything > budget):
            break
        for t in sizes:
            for combo in itertools.combinations(range(m), t):
                rows.append(combo)
                weights.append(mass[t] / math.comb(m, t))
            todo.remove(t)
        left -= count
        remaining -= pair_mass
    z = torch.zeros(len(rows), m, dtype=torch.bool)
    for r, combo in enumerate(rows):
        z[r, list(combo)] = True
    if left <= 0 or not todo:
        return z, np.asarray(weights)
    p = torch.tensor([mass[t] for t in todo], dtype=torch.float64)
    drawn: dict[bytes, list] = {}
    draws, attempts = 0, 0
    while len(drawn) < left and attempts < 20 * budget:
        attempts += 1
        t = todo[int(torch.multinomial(p, 1, generator=generator))]
        pick = torch.zeros(m, dtype=torch.bool)
        pick[torch.randperm(m, generator=generator)[:t]] = True
        for c in (pick, ~pick):
            if len(drawn) >= left and c.numpy().tobytes() not in drawn:
                continue
            drawn.setdefault(c.numpy().tobytes(), [c, 0])[1] += 1
            draws += 1
    sampled = list(drawn.values())
    z = torch.cat([z, torch.stack([c for c, _ in sampled])])
    w = [k * remaining / draws for _, k in sampled]
    return z, np.asarray(weights + w)


def solve(z: T, w: np.ndarray, y: np.ndarray, total: float) -> np.ndarray:
    """Weighted least squares ``y ~ z @ phi`` with ``sum(phi) = total`` (the last value eliminated)."""
    m = z.shape[1]
    if m == 1 or len(y) == 0:
        return np.full(m, total / m)
    zf = z.numpy().astype(np.float64)
    a = zf[:, :-1] - zf[:, -1:]
    t = y - zf[:, -1] * total
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(a * sw[:, None], t * sw, rcond=None)[0]
    return np.append(coef, total - coef.sum())


@register
class KernelShap(SegmentMethod):
    name = "kernel_shap"
    invariances = frozenset({"shift", "negation", "baseline_zero"})
    summary = "KernelSHAP: Shapley-kernel weighted regression on coalitions; exact once samples cover them all."
    params = {"mask": mask_option("slic:50"), "samples": integer(300, "coalitions scored per image")}
    has_delta = True
    spread = True

    def values(self, ctx: Context, x: T, base: T, labels: T, counts: list[int], fx: T) -> tuple[T, T]:
        """``samples`` coalitions per image (see ``kernel_design``) plus the empty one, f(x) from the inputs'
        pass; the regression is constrained to efficiency. Passes: ``B + K x sum_i (1 + min(samples,
        2^S_i - 2))`` (fewer when sampled coalitions repeat; ``info["coalitions"]``)."""
        designs, weights = [], []
        for m in counts:
            z, w = kernel_design(m, self.options["samples"], ctx.generator)
            designs.append(torch.cat([torch.zeros(1, m, dtype=torch.bool), z]))
            weights.append(w)
        values, _ = evaluate_designs(ctx, x, base, labels, designs, self.name)
        v = torch.zeros(x.shape[0], max(counts), dtype=x.dtype, device=x.device)
        fb = torch.stack([s[0] for s in values])
        for i, s in enumerate(values):
            y = (s[1:] - s[0]).double().cpu().numpy()
            phi = solve(designs[i][1:], weights[i], y, float(fx[i] - s[0]))
            _store(v, i, torch.from_numpy(phi).to(v))
        return v, fb
