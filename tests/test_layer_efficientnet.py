"""Layer attribution on EfficientNet-Lite0 with its real weights: exact values where they can be written down,
completeness where the method promises it (ReLU6, BatchNorm, residual blocks after the layer)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cnnlens

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor


@pytest.fixture(scope="module")
def x0(x: T) -> T:
    return torch.zeros_like(x)


def closed_form_at_conv_head(lite0, x: T, x0: T, target: int) -> T:
    """After ``_conv_head`` the model is BatchNorm, ReLU6, global average pooling and a linear layer: the score is
    a sum of one term per unit, ``phi_u(a_u) = w[target, c] / (h w) relu6(bn(a_u))``. The layer's integrated
    gradients and its conductance are then, per unit, ``phi_u(a_u(x)) - phi_u(a_u(x0))`` on any path."""
    m = lite0.module
    acts = [cnnlens.explain(lite0, v, "layer_activation", layer="_conv_head").attributions for v in (x, x0)]

    def phi(a: T) -> T:
        bn = m._bn1
        z = (a - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        z = z * bn.weight[:, None, None] + bn.bias[:, None, None]
        return F.relu6(z) * m._fc.weight[target][:, None, None] / (a.shape[-1] * a.shape[-2])

    with torch.no_grad():
        return phi(acts[0][0])[None] - phi(acts[1][0])[None]


def test_conductance_and_layer_ig_at_the_head_conv_converge_to_the_closed_form(lite0, x, x0, target) -> None:
    """Per unit: the error falls as 1 / steps (units cross ReLU6's kinks along the path); the head ran at the
    path points only, the 256 steps are tail passes."""
    exact = closed_form_at_conv_head(lite0, x, x0, target)

    def error(e) -> float:
        return float((e.attributions - exact).abs().sum() / exact.abs().sum())

    lig = [
        cnnlens.explain(
            lite0, x, "layer_integrated_gradients", baseline=x0, target=target, layer="_conv_head", steps=steps
        )  # fmt: skip
        for steps in (32, 256)
    ]
    assert error(lig[1]) < 0.006 and error(lig[1]) < error(lig[0]) / 4
    cond = cnnlens.explain(lite0, x, "layer_conductance", baseline=x0, target=target, layer="_conv_head", points=3,
                           steps=256, tolerance=None)  # fmt: skip
    assert error(cond) < 0.01  # two segments of 128 nodes each
    for e in (lig[1], cond):
        assert e.delta.abs().item() <= 2e-3 * abs(exact.sum().item())
        assert e.info["cut"]["path"] == "traced"
    assert cond.info["rows"]["head"] == 3 and lig[1].info["rows"]["head"] == 2
    default = cnnlens.explain(lite0, x, "layer_conductance", baseline=x0, target=target, layer="_conv_head")
    assert default.info["per_unit_tail"] and default.info["rows"]["head"] == 2  # every path gives the same
    sixteen = cnnlens.explain(lite0, x, "layer_conductance", baseline=x0, target=target, layer="_conv_head", points=16)
    assert error(default) < min(0.02, error(sixteen))  # units crossing ReLU6's kinks: the tail's quadrature
    assert abs(default.delta.item()) <= 0.01 * abs(exact.sum().item())


@pytest.mark.parametrize("name", ["layer_deeplift", "layer_deeplift_shap"])
def test_layer_deeplift_is_complete_with_relu6_batchnorm_and_residual_blocks_after_the_layer(lite0, x, target, name):
    """At ``_blocks.3`` every path goes through the layer; the tail has ReLU6, BatchNorm and residual blocks."""
    base = torch.zeros_like(x) if name == "layer_deeplift" else torch.stack([torch.zeros_like(x[0]), -x[0]])
    e = cnnlens.explain(lite0, x, name, baseline=base, target=target, layer="_blocks.3")
    with torch.no_grad():
        gap = lite0.module(x)[0, target] - lite0.module(base)[:, target].mean()
    assert abs(e.attributions.sum().item() - gap.item()) < 1e-4 * abs(gap.item())
    assert e.delta.abs().item() < 1e-4 * abs(gap.item())


def test_layer_ig_and_conductance_adaptive_at_blocks_15(lite0, x, x0, target) -> None:
    """Where Captum's conductance misses f(x) - f(x0) by 24% (50 steps): ours within 1% by default."""
    cond = cnnlens.explain(lite0, x, "layer_conductance", baseline=x0, target=target, layer="_blocks.15")
    lig = cnnlens.explain(lite0, x, "layer_integrated_gradients", baseline=x0, target=target, layer="_blocks.15",
                          tolerance=0.01, steps=8)  # fmt: skip
    with torch.no_grad():
        gap = (lite0.module(x) - lite0.module(x0))[0, target]
    for e in (cond, lig):
        assert abs(e.attributions.sum().item() - gap.item()) <= 0.01 * abs(gap.item())
    assert cond.info["rows"]["head"] == 16  # the default points
