"""LIME: a weighted ridge regression on random on/off patterns of superpixels, local to the image."""

from __future__ import annotations

import numpy as np
import torch

from ...core.options import integer, number
from ...engine import Context
from .._registry import register
from ._common import SegmentMethod, mask_option
from .shapley import evaluate_designs

T = torch.Tensor


def lime_design(m: int, samples: int, generator: torch.Generator) -> T:
    """``samples`` on/off patterns ``(N, m)``: for each, a number of segments to switch off drawn uniformly
    from ``1..m``, then which ones (as the LIME paper's image explainer does)."""
    z = torch.ones(samples, m, dtype=torch.bool)
    off = torch.randint(1, m + 1, (samples,), generator=generator)
    for r in range(samples):
        z[r, torch.randperm(m, generator=generator)[: int(off[r])]] = False
    return z


@register
class Lime(SegmentMethod):
    name = "lime"
    invariances = frozenset({"shift", "negation", "baseline_zero"})
    summary = "LIME: ridge regression (scikit-learn) of scores on superpixels switched to the baseline."
    params = {
        "mask": mask_option("slic:50"),
        "samples": integer(200, "perturbed images per image"),
        "kernel_width": number(0.25, "width of the exponential kernel on the cosine distance", open_min=True),
        "alpha": number(1.0, "ridge regularisation of the linear surrogate", open_min=True),
    }

    def values(self, ctx: Context, x: T, base: T, labels: T, counts: list[int], fx: T) -> tuple[T, None]:
        """Coefficients of ``Ridge(alpha)`` fitted to the scores of ``samples`` perturbed images plus the image
        itself (f(x) from the inputs' pass), weighted by ``sqrt(exp(-d^2 / kernel_width^2))`` with ``d`` the
        cosine distance of the on/off pattern to all-on. Passes: ``B + K x B x samples``. The top segments of
        either sign are ``top_segments(e.info, k, positive)``."""
        from sklearn.linear_model import Ridge

        designs = [lime_design(m, self.options["samples"], ctx.generator) for m in counts]
        values, _ = evaluate_designs(ctx, x, base, labels, designs, self.name)
        v = torch.zeros(x.shape[0], max(counts), dtype=x.dtype, device=x.device)
        width = float(self.options["kernel_width"])
        for i, (z, s) in enumerate(zip(designs, values, strict=True)):
            zf = np.concatenate([np.ones((1, counts[i])), z.numpy().astype(np.float64)])
            y = np.concatenate([[float(fx[i])], s.double().cpu().numpy()])
            d = 1.0 - np.sqrt(zf.sum(1) / counts[i])  # cosine distance to the all-on pattern
            w = np.sqrt(np.exp(-(d**2) / width**2))
            model = Ridge(alpha=float(self.options["alpha"]), fit_intercept=True).fit(zf, y, sample_weight=w)
            v[i, : counts[i]] = torch.from_numpy(model.coef_).to(v)
        return v, None
