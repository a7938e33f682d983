"""Partition SHAP: Owen values over a binary hierarchy of segments, refined as deep as ``max_evals`` allows."""

from __future__ import annotations

import torch

from ...core.errors import CnnlensError
from ...core.options import integer
from ...engine import Context
from .._registry import register
from ._common import SegmentMethod, coalition_scores, mask_option

T = torch.Tensor
Tree = int | tuple["Tree", "Tree"]


def hierarchy(labels: T, m: int) -> Tree:
    """A balanced binary tree over segments ``0..m-1``: split at the median centroid along the wider axis."""
    h, w = labels.shape
    flat = labels.flatten().cpu()
    size = torch.bincount(flat, minlength=m).double()
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float64).repeat(h)
    centre = torch.stack(
        [torch.bincount(flat, rows, minlength=m) / size, torch.bincount(flat, cols, minlength=m) / size], 1
    )

    def split(ids: list[int]) -> Tree:
        if len(ids) == 1:
            return ids[0]
        c = centre[ids]
        axis = int((c.max(0).values - c.min(0).values).argmax())
        order = sorted(ids, key=lambda i: (float(centre[i, axis]), i))
        half = len(order) // 2
        return (split(order[:half]), split(order[half:]))

    return split(list(range(m)))


def _members(tree: Tree) -> int:
    return 1 << tree if isinstance(tree, int) else _members(tree[0]) | _members(tree[1])


def owen_terms(tree: Tree, depth: int) -> list[tuple[int, int, float]]:
    """``(node, context, weight)`` bitmask terms: the Owen value of a node is ``sum weight x (v(context | node)
    - v(context))``. At every split the sibling is absent or present with weight 1/2 each (the two orders of
    a two-player game), so each level is efficient and the values sum to ``v(all) - v(none)``. Nodes at
    ``depth`` are not split further."""
    terms: list[tuple[int, int, float]] = []

    def rec(node: Tree, contexts: list[tuple[int, float]], level: int) -> None:
        if isinstance(node, int) or level == depth:
            terms.extend((_members(node), c, w) for c, w in contexts)
            return
        for child, sibling in ((node[0], node[1]), (node[1], node[0])):
            other = _members(sibling)
            rec(child, [(c, w / 2) for c, w in contexts] + [(c | other, w / 2) for c, w in contexts], level + 1)

    rec(tree, [(0, 1.0)], 0)
    return terms


def _tree_depth(tree: Tree) -> int:
    return 0 if isinstance(tree, int) else 1 + max(_tree_depth(tree[0]), _tree_depth(tree[1]))


def plan(tree: Tree, m: int, max_evals: int) -> tuple[list[tuple[int, int, float]], list[int], int]:
    """The deepest uniform refinement whose coalitions (without the full one, known as f(x)) fit ``max_evals``:
    ``(terms, coalitions to score, depth)``."""
    full = (1 << m) - 1
    best = None
    for depth in range(_tree_depth(tree) + 1):
        terms = owen_terms(tree, depth)
        needed = sorted(({c for _, c, _ in terms} | {c | n for n, c, _ in terms}) - {full})
        if best is not None and len(needed) > max_evals:
            break
        best = (terms, needed, depth)
    assert best is not None
    return best


def _bits(masks: list[int], m: int) -> T:
    return torch.tensor([[(c >> j) & 1 for j in range(m)] for c in masks], dtype=torch.bool).view(-1, m)


@register
class PartitionShap(SegmentMethod):
    name = "partition_shap"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Partition SHAP: Owen values over a binary segment hierarchy, as deep as max_evals allows."
    params = {
        "mask": mask_option("grid:16"),
        "max_evals": integer(500, "most coalitions scored per image (the tree is cut where they run out)"),
        "top_k": integer(1, "also give the Owen values of the top_k classes from the same passes"),
    }
    has_delta = True
    spread = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T | None]:
        attr, delta = super().compute(ctx, baseline)
        if "class_values" in ctx.info and baseline is not None:  # averaged over the baselines like the values
            ctx.info["class_values"] = ctx.info["class_values"] / baseline.shape[1]
        return attr, delta

    def values(self, ctx: Context, x: T, base: T, labels: T, counts: list[int], fx: T) -> tuple[T, T]:
        """Per image: a balanced binary tree over the segments (``info["hierarchy"]``), Owen values of the tree
        cut at the deepest level whose coalitions fit ``max_evals`` (``info["depth"]``; a whole tree that fits
        gives exact Owen values). A node that is not split shares its value among its segments by pixel count.
        Passes: ``B`` + the distinct coalitions (``info["coalitions"]``, at most ``max_evals`` per image unless
        even the root alone needs more). ``top_k > 1``: the same passes also give the Owen values of each
        image's top-k predicted classes, ``info["classes"]`` ``(B, k)`` and ``info["class_values"]`` ``(B, k, S)``."""
        b, width = x.shape[0], max(counts)
        k = self.options["top_k"]
        if k > ctx.logits.shape[1]:
            raise CnnlensError(f"top_k={k} but the model has {ctx.logits.shape[1]} classes")
        classes = ctx.logits.topk(k, dim=1).indices if k > 1 else None
        plans, trees = [], []
        for i, m in enumerate(counts):
            trees.append(hierarchy(labels[i], m))
            plans.append(plan(trees[-1], m, self.options["max_evals"]))
        z = torch.cat(
            [torch.nn.functional.pad(_bits(p[1], m), (0, width - m)) for p, m in zip(plans, counts, strict=True)]
        )
        owner = torch.cat([torch.full((len(p[1]),), i, dtype=torch.long) for i, p in enumerate(plans)])
        z, owner = z.to(x.device), owner.to(x.device)
        extra: T | None = None
        if classes is None:
            s = coalition_scores(ctx, x, base, labels, z, owner, self.name)
        else:
            s, extra = coalition_scores(ctx, x, base, labels, z, owner, self.name, classes)
        games = [s] if extra is None else [s, *extra.unbind(1)]
        full = [fx] if classes is None else [fx, *ctx.logits.gather(1, classes).unbind(1)]
        v = torch.zeros(len(games), b, width, dtype=torch.float64)
        fb = torch.zeros(len(games), b, dtype=torch.float64)
        start = 0
        for i, (terms, needed, _) in enumerate(plans):
            m, n = counts[i], len(needed)
            size = torch.bincount(labels[i].flatten().cpu(), minlength=m).double()
            nodes = sorted({node for node, _, _ in terms})
            inside = _bits(nodes, m).double()
            share = inside * size / (inside * size).sum(1, keepdim=True)  # a node's value over its segments
            for g, (scores, f_all) in enumerate(zip(games, full, strict=True)):
                value = dict(zip(needed, scores[start : start + n].double().tolist(), strict=True))
                value[(1 << m) - 1] = float(f_all[i])
                gain = dict.fromkeys(nodes, 0.0)
                for node, c, w in terms:
                    gain[node] += w * (value[c | node] - value[c])
                v[g, i, :m] = torch.tensor([gain[node] for node in nodes], dtype=torch.float64) @ share
                fb[g, i] = value[0]
            start += n
        ctx.info["hierarchy"] = trees
        ctx.info["depth"] = [p[2] for p in plans]
        used = ctx.info.setdefault("coalitions", [0] * b)
        ctx.info["coalitions"] = [u + len(p[1]) for u, p in zip(used, plans, strict=True)]
        if classes is not None:
            prev = ctx.info.get("class_values")
            ctx.info["classes"] = classes
            ctx.info["class_values"] = v[1:].permute(1, 0, 2).to(x) + (0 if prev is None else prev)
        return v[0].to(x), fb[0].to(x)
