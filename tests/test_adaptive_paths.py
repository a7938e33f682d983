"""Adaptive integrated gradients on toy models whose score along the path is known in closed form.

``f(x) = g(w . x)`` with a zero baseline: along the path ``f(alpha) = g(alpha s)`` with ``s = w . x`` (here the same for every image), so the IG
attributions are ``x * w * (g(s) - g(0)) / s`` exactly, whatever ``g`` is.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens

T = torch.Tensor


class OfProjection(nn.Module):
    """``(B, C, H, W) -> (B, 2)``: class 0 is ``g(w . x)``, class 1 is its negative."""

    def __init__(self, g, w: T) -> None:
        super().__init__()
        self.g, self.w = g, nn.Parameter(w)

    def forward(self, x: T) -> T:
        y = self.g((x * self.w).flatten(1).sum(1))
        return torch.stack([y, -y], 1)


S = 1.7


def _case(g, seed: int = 0) -> tuple[nn.Module, T]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(1, 2, 3, 3, generator=gen)
    x = torch.randn(2, 2, 3, 3, generator=gen)
    x = x * (S / (x * w).flatten(1).sum(1)).view(-1, 1, 1, 1)  # s = w . x = S for every image
    return OfProjection(g, w), x


def test_a_cubic_score_is_integrated_exactly_in_the_first_round() -> None:
    """``f = (w . x)^3``: ``h(alpha) = 3 s^3 alpha^2`` is a polynomial Simpson's rule integrates exactly, so the
    first round (steps=50: 8 panels, 17 nodes) is already complete and nothing is refined."""
    model, x = _case(lambda u: u**3)
    r = cnnlens.explain(model, x, "integrated_gradients", baseline="zero", target=0, tolerance=1e-4)
    exact = x * model.w.detach() * S**2  # x * w * s^3 / s
    torch.testing.assert_close(r.attributions, exact, rtol=1e-5, atol=1e-5 * exact.abs().max().item())
    assert r.info["passes_per_image"] == [2 + 17, 2 + 17]
    assert r.info["rounds"] == 1


@pytest.mark.parametrize("kink", [0.013, 0.37, 0.9])
def test_a_kinked_score_reaches_the_tolerance_on_the_vector_too(kink: float) -> None:
    """``f = relu(w . x - kink s0)``: ``h`` jumps where the path crosses the kink, which no panel rule integrates
    exactly; refining there makes the attributions, not just their sum, right to the tolerance (here the error
    of the vector is the completeness error times a fixed vector, so one bounds the other)."""
    model, x = _case(lambda u: torch.relu(u - kink * S))
    r = cnnlens.explain(model, x, "integrated_gradients", baseline="zero", target=0, tolerance=1e-3, max_passes=512)
    exact = x * model.w.detach() * (1 - kink)  # active on the last (1 - kink) of the path
    rel = (r.attributions - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
    assert (rel <= 1e-3).all(), rel
    used = r.info["passes_per_image"]
    assert sum(used) == r.passes
    assert 1 <= r.info["rounds"] <= max(used)  # rounds are batched across images; each adds at least 2 rows
