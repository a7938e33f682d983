"""Feature ablation, region occlusion and feature permutation: one segment changed at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...core.errors import CnnlensError
from ...core.options import integer
from ...engine import Context
from .._registry import register
from ._common import SegmentMethod, coalition_scores, mask_option, scores
from ._incremental import changed_scores, engine, full, incremental_option

if TYPE_CHECKING:
    from ._incremental import Inside

# incremental inference pays off while the segments' bounding boxes are small
_MAX_BOX_AREA = 0.25

T = torch.Tensor


def one_off(counts: list[int], width: int, device: torch.device) -> tuple[T, T, T]:
    """Coalitions with one segment removed, per image: ``(z (N, S) bool, owner (N,), segment (N,))``."""
    owner = torch.cat([torch.full((c,), i, dtype=torch.long) for i, c in enumerate(counts)]).to(device)
    segment = torch.cat([torch.arange(c) for c in counts]).to(device)
    z = torch.ones(len(owner), width, dtype=torch.bool, device=device)
    z[torch.arange(len(owner), device=device), segment] = False
    return z, owner, segment


@register
class FeatureAblation(SegmentMethod):
    name = "feature_ablation"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Score drop when each segment of a feature mask is replaced by the baseline, one at a time."
    params = {"mask": mask_option("grid:16"), "incremental": incremental_option()}

    def values(self, ctx: Context, x: T, base: T, labels: T, counts: list[int], fx: T) -> tuple[T, None]:
        """``f(x) - f(x with segment s replaced)``. Passes: ``B + K x sum_i S_i`` (K baselines) with full forward
        passes. Where the segments' bounding boxes average at most a quarter of the image and the model traces,
        incremental inference (exact) computes each copy only where its segment can reach: see ``occlusion``
        for how its passes count (``info["inference"]``, ``info["multiply_adds"]``)."""
        z, owner, segment = one_off(counts, max(counts), x.device)
        s = None
        eng = engine(ctx, self.options["incremental"], min(counts))
        if eng is not None:
            boxes = segment_boxes(labels, owner, segment)
            area = (
                float(((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double().mean()) / labels[0].numel()
            )
            if area > _MAX_BOX_AREA:
                full(ctx, f"the segments' bounding boxes cover {area:.0%} of the image on average (incremental "
                     f"inference is used up to {_MAX_BOX_AREA:.0%})")  # fmt: skip
            else:
                s = changed_scores(ctx, eng, base, owner, boxes, _segment_inside(labels, owner, segment), self.name)
        if s is None:
            s = coalition_scores(ctx, x, base, labels, z, owner, self.name)
        drop = fx[owner] - s
        v = torch.zeros(x.shape[0], max(counts), dtype=x.dtype, device=x.device)
        v[owner, segment] = drop
        return v, None


@register
class RegionOcclusion(FeatureAblation):
    name = "region_occlusion"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Occlusion of superpixels: score drop when each region is replaced by the baseline."
    params = {"mask": mask_option("slic:100"), "incremental": incremental_option()}


def segment_boxes(labels: T, owner: T, segment: T) -> T:
    """``(rows, 4)`` bounding box (top, bottom, left, right; bottom and right exclusive) of segment
    ``segment[r]`` of image ``owner[r]`` (``labels``: (B, H, W))."""
    b, h, w = labels.shape
    s = int(labels.max()) + 1
    flat = labels.flatten(1)
    ys = torch.arange(h, device=labels.device).repeat_interleave(w).expand(b, -1)
    xs = torch.arange(w, device=labels.device).repeat(h).expand(b, -1)
    out = []
    for coords, size in ((ys, h), (xs, w)):
        lo = torch.full((b, s), size, dtype=torch.long, device=labels.device).scatter_reduce(1, flat, coords, "amin")
        hi = torch.full((b, s), -1, dtype=torch.long, device=labels.device).scatter_reduce(1, flat, coords, "amax")
        out += [lo[owner, segment], hi[owner, segment] + 1]
    return torch.stack(out, 1)


def _segment_inside(labels: T, owner: T, segment: T) -> Inside:
    def inside(rows: T, y: T, x: T, h: int, w: int) -> T:
        iy = y[:, None] + torch.arange(h, device=y.device)
        ix = x[:, None] + torch.arange(w, device=x.device)
        crop = labels[owner[rows][:, None, None], iy[:, :, None], ix[:, None, :]]
        return (crop == segment[rows].view(-1, 1, 1))[:, None]

    return inside


@register
class FeaturePermutation(SegmentMethod):
    name = "feature_permutation"
    invariances = frozenset({"shift", "negation"})
    summary = "Score drop when a segment takes its pixels from another image of the batch (needs B >= 2)."
    params = {"mask": mask_option("grid:16"), "samples": integer(1, "random permutations per segment")}
    needs_baseline = None

    def values_without_baseline(self, ctx: Context, x: T, labels: T, counts: list[int], fx: T) -> tuple[T, None]:
        """Mean over ``samples`` draws of ``f(x) - f(x with segment s taken from another image)``, the other
        image drawn uniformly per image and segment (a random derangement of the batch; unlike Captum's random
        permutation no image keeps its own pixels, which adds a drop of 0). Passes: ``B + samples x sum_i S_i``."""
        b = x.shape[0]
        if b < 2:
            raise CnnlensError("feature_permutation swaps segments between images: give at least 2 images")
        _, owner, segment = one_off(counts, max(counts), x.device)
        n, reps = len(owner), self.options["samples"]
        own, seg = owner.repeat(reps), segment.repeat(reps)
        donor = (own + 1 + ctx.randint(b - 1, reps * n)) % b  # any image but the row's own

        def build(sl: slice) -> T:
            o, d = own[sl], donor[sl]
            inside = (labels[o] == seg[sl].view(-1, 1, 1)).unsqueeze(1)
            return torch.where(inside, x[d], x[o])

        drop = fx[own] - scores(ctx, reps * n, build, own, self.name)
        v = torch.zeros(b, max(counts), dtype=x.dtype, device=x.device)
        v.index_put_((own, seg), drop / reps, accumulate=True)
        return v, None
