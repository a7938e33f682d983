"""Quality metrics: class discrimination and detail (two of the survey's comparison criteria, as numbers)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..core.options import number
from ..engine import class_scores
from ._base import Metric, MetricRun
from ._registry import register_metric
from ._sanity import ABSOLUTE, maps, spearman

T = torch.Tensor


@register_metric
class ClassDiscrimination(Metric):
    """Spearman correlation of the map for the explained class with the map for the highest-scoring other class.

    The method is run a second time with the other class as target; channel sums, absolute if ``absolute``.
    """

    name = "class_discrimination"
    summary = "rank correlation of the maps for the explained class and the next most likely one (1: class-blind)"
    higher_is_better = False
    params = {"absolute": ABSOLUTE}
    rerun = True

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        logits = class_scores(job.ctx.logits)  # a one-logit model's classes: -z and z
        first = job.targets
        rival = logits.detach().clone()
        rival[torch.arange(job.n, device=rival.device), first] = -math.inf
        second = rival.argmax(1)
        absolute = self.options["absolute"]
        a = maps(job.attributions, absolute)
        b = maps(job.explain(job.inputs, targets=second), absolute)
        values = torch.tensor([spearman(a[i], b[i]) for i in range(job.n)], dtype=torch.float64)
        return values, None, None, {"classes": first.tolist(), "other_classes": second.tolist()}


def explained_variance(m: T, size: int) -> T:
    """Fraction of each map's variance kept by its best approximation with ``size x size`` constant cells.

    ``m``: ``(B, H, W)``. Cells tile the map from the top-left corner (the last row/column of cells may be
    smaller); each cell takes the mean of its pixels. A constant map keeps all of its (zero) variance: 1.
    """
    return _kept(*_prepare(m), size)


def _prepare(m: T) -> tuple[T, T]:
    m = m.double()
    m = m - m.mean((1, 2), keepdim=True)
    return torch.nn.functional.pad(m.cumsum(1).cumsum(2), (1, 0, 1, 0)), (m**2).sum((1, 2))


def _kept(integral: T, total: T, size: int) -> T:
    h, w = integral.shape[1] - 1, integral.shape[2] - 1
    r = torch.tensor([*range(0, h, size), h])
    c = torch.tensor([*range(0, w, size), w])
    sums = (
        integral[:, r[1:]][:, :, c[1:]]
        - integral[:, r[:-1]][:, :, c[1:]]
        - integral[:, r[1:]][:, :, c[:-1]]
        + integral[:, r[:-1]][:, :, c[:-1]]
    )
    kept = (sums**2 / torch.outer(r.diff(), c.diff()).double()).sum((1, 2))
    return torch.where(total > 0, kept / total.clamp_min(1e-300), torch.ones_like(total))


def effective_resolution(m: T, fraction: float = 0.95) -> T:
    """``sqrt(H W) / s`` per map ``(B, H, W)``, ``s`` the largest cell side whose cells keep ``fraction`` of the
    variance.

    A map made of ``k x k`` constant blocks (``k`` dividing the size) gives ``k`` (up to ~2% for ``k = 2``: cells
    one pixel wider than the blocks still keep 95%); independent pixel noise gives the full resolution; a
    constant map gives one cell.
    """
    h, w = m.shape[-2:]
    integral, total = _prepare(m)
    best = torch.ones(m.shape[0], dtype=torch.float64)
    for s in range(2, max(h, w) + 1):
        keep = _kept(integral, total, s) >= fraction - 1e-12
        best = torch.where(keep, torch.full_like(best, float(s)), best)
    return math.sqrt(h * w) / best


@register_metric
class Detail(Metric):
    """``effective_resolution`` of each map (channel sum, absolute if ``absolute``): cells per side of the coarsest
    square grid that keeps ``fraction`` of the map's variance. Pixel-level maps reach the input size."""

    name = "detail"
    summary = "effective resolution sqrt(HW)/s, s x s the largest cells keeping `fraction` of the map's variance"
    higher_is_better = None
    params = {
        "fraction": number(
            0.95, "share of the map's variance the cells keep", maximum=1.0, open_min=True, open_max=True
        ),
        "absolute": ABSOLUTE,
    }

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        m = maps(job.attributions, self.options["absolute"])
        return effective_resolution(m, float(self.options["fraction"])), None, None, {}
