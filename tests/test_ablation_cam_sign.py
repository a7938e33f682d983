"""Ablation-CAM for scores of any sign (issue 26): the weight is the drop y - y_k divided by |y|.

Hand-computed net: a 1x1 convolution makes channels A_0 = x and A_1 = 2x, average pooling and one logit
z = mean(A_0) - 3 mean(A_1) = -5m with m = mean(x). Zeroing channel 0 gives -6m, zeroing channel 1 gives m.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens


def _net() -> nn.Module:
    conv = nn.Conv2d(1, 2, 1, bias=False)
    fc = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        fc.weight.copy_(torch.tensor([[1.0, -3.0]]))
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(1, 1, 4, 4) + 0.5


def _map(x: torch.Tensor, target) -> torch.Tensor:
    return cnnlens.explain(_net(), x, "ablation_cam", layer="0", target=target).info["layer_maps"][0][0, 0]


def test_negated_score_negates_the_drops(x) -> None:
    """s = z (y = -5m): drops (m, -6m) / 5m, map ReLU(0.2 x - 2.4 x) = 0. For -s (y = 5m) the drops are
    negated: map ReLU(-0.2 x + 2.4 x) = 2.2 x. Dividing by y instead of |y| gave both scores the 2.2 x map."""
    s = _map(x, lambda z: z[:, 0])
    neg = _map(x, lambda z: -z[:, 0])
    torch.testing.assert_close(s, torch.zeros_like(s))
    torch.testing.assert_close(neg, 2.2 * x[0, 0])


@pytest.mark.parametrize("shift", [3.0, -50.0])
def test_constant_shift_rescales_by_a_positive_factor(x, shift) -> None:
    """A constant C added to the score leaves every drop y - y_k unchanged; the map is divided by |y + C|
    instead of |y|, so it is the same map up to a positive factor (C = -50 makes y + C negative)."""
    y = 5 * float(x.mean())
    base = _map(x, lambda z: -z[:, 0])
    shifted = _map(x, lambda z: -z[:, 0] + shift)
    assert base.amax() > 0
    torch.testing.assert_close(shifted * abs(y + shift), base * abs(y))
