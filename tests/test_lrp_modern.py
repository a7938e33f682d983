"""LRP on modern CNNs: squeeze-and-excitation gates, LayerNorm / GroupNorm / LayerNorm2d, GELU / SiLU / Hardswish.

The reference is a slow re-implementation written stage by stage: each linear stage (a convolution, a
normalization with its standard deviation held constant, a product with a gate held constant, a mean, a fully
connected layer) gets ``R_in = x * J^T (R / f(x))`` with its Jacobian ``J`` built explicitly by autograd, each
element-wise activation passes ``R`` unchanged. Conservation on bias-free copies of torchvision nets.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from _nets import inputs, without_biases
from _zoo import calibrate

T = torch.Tensor
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"epsilon": 1e-9, "stabilizer": 1e-9}  # LRP-0 as epsilon -> 0
ALL = {"conv": "epsilon", "linear": "epsilon"}


class ModernToy(nn.Module):
    """conv -> GroupNorm -> GELU -> timm LayerNorm2d -> torchvision squeeze-and-excitation (SiLU inside,
    Hardsigmoid gate) -> Hardswish -> mean -> linear, with biases everywhere."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        from timm.layers import LayerNorm2d
        from torchvision.ops import SqueezeExcitation

        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = LayerNorm2d(4)
        self.se = SqueezeExcitation(4, 2, activation=nn.SiLU, scale_activation=nn.Hardsigmoid)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():  # non-trivial affine parameters
            for norm in (self.gn, self.ln):
                norm.weight.copy_(torch.rand(4) + 0.5)
                norm.bias.copy_(torch.randn(4) * 0.1)
        self.eval()

    def forward(self, x: T) -> T:
        h = self.ln(F.gelu(self.gn(self.conv(x))))
        return self.fc(F.hardswish(self.se(h)).mean((2, 3)))


def _stage(f, x: T, r: T) -> T:
    """``x * J^T (r / f(x))`` with the Jacobian of ``f`` (linear in ``x`` up to an additive constant) built
    explicitly: the slow, obviously right LRP-0 of one linear stage."""
    jac = torch.autograd.functional.jacobian(f, x, vectorize=True)  # (*out, *in)
    y = f(x)
    s = (r / y).reshape(-1)
    return (x * (s @ jac.reshape(s.numel(), -1)).reshape(x.shape)).detach()


def _reference(net: ModernToy, x: T, t: int) -> T:
    """LRP-0 of one image ``x`` (1, C, H, W) for class ``t``, stage by stage (see the module docstring)."""
    gn, ln, se = net.gn, net.ln, net.se
    with torch.no_grad():
        z1 = net.conv(x)
        a1 = F.gelu(gn(z1))
        n = ln(a1)
        gate = se._scale(n)  # held constant: a weight of the relevance pass
        y = n * gate
        p = F.hardswish(y).mean((2, 3))
        out = net.fc(p)

    def norm(v: T, dims: tuple, shape: tuple, w: T, b: T, eps: float):
        """``(u - mean) / std * w + b`` over ``dims`` of ``u`` viewed as ``shape``; ``std`` from ``v``: a constant."""
        std = torch.sqrt(v.reshape(shape).var(dims, unbiased=False, keepdim=True) + eps)

        def f(u: T) -> T:
            g = u.reshape(shape)
            return ((g - g.mean(dims, keepdim=True)) / std).reshape(u.shape) * w + b

        return f

    r = torch.zeros_like(out)
    r[0, t] = out[0, t]
    r = _stage(lambda u: net.fc(u), p, r)
    r = _stage(lambda u: u.mean((2, 3)), F.hardswish(y), r)  # hardswish: passes r
    r = _stage(lambda u: u * gate, n, r)  # the gate: a fixed weight, the gate's branch gets nothing
    c = n.shape[1]
    ln_map = norm(a1, (1,), a1.shape, ln.weight.view(1, c, 1, 1), ln.bias.view(1, c, 1, 1), ln.eps)
    r = _stage(ln_map, a1, r)  # then GELU passes r
    grouped = (1, gn.num_groups, -1)
    gn_map = norm(z1, (2,), grouped, gn.weight.view(1, c, 1, 1), gn.bias.view(1, c, 1, 1), gn.eps)
    r = _stage(gn_map, z1, r)
    return _stage(lambda u: F.conv2d(u, net.conv.weight, net.conv.bias, padding=1), x, r)


def test_lrp_equals_the_stage_by_stage_reference_on_gates_and_normalizations() -> None:
    net = ModernToy()
    x = inputs(2, 3, 5, 5)
    e = cnnlens.explain(net, x, "lrp", composite=ALL, **TINY)
    for i in range(x.shape[0]):
        want = _reference(net, x[i : i + 1], int(e.target[i]))
        torch.testing.assert_close(e.attributions[i : i + 1], want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    rules = {(r["operation"], r["rule"]) for r in e.info["rules"]}
    assert ("F.group_norm", "normalization (scale held constant)") in rules
    assert ("F.layer_norm", "normalization (scale held constant)") in rules
    assert ("Tensor.mul", "gate (held as a weight)") in rules


def test_relevance_is_conserved_through_gates_and_normalizations_without_biases() -> None:
    net = without_biases(ModernToy(seed=1))
    x = inputs(2, 3, 6, 6)
    with torch.no_grad():
        scores = net(x).amax(1)
    for composite in ("epsilon", "epsilon_gamma_box"):
        e = cnnlens.explain(net, x, "lrp", composite=composite, zero_bias=True, bounds=(-4.0, 4.0), **TINY)
        torch.testing.assert_close(e.attributions.flatten(1).sum(1), scores, rtol=1e-4, atol=0, msg=composite)


def test_the_gate_branch_gets_no_relevance_and_the_model_is_untouched() -> None:
    net = ModernToy()
    before = copy.deepcopy(net.state_dict())
    e = cnnlens.explain(net, inputs(1, 3, 5, 5), "layer_lrp", layer="se.fc1", composite=ALL)
    assert e.attributions.shape == (1, 2, 1, 1)
    assert torch.equal(e.attributions, torch.zeros_like(e.attributions))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())


class Product(nn.Module):
    """A conv, then a product written one way or another (``kind``), a mean and a linear layer."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.squeeze = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)
        self.eval()

    def forward(self, x: T) -> T:
        h = F.relu(self.conv(x))
        s = self.squeeze(h.mean((2, 3), keepdim=True))
        k = self.kind
        if k == "silu":
            h = F.silu(self.conv(x))
        elif k == "x_sigmoid_x":
            z = self.conv(x)
            h = z * z.sigmoid()
        elif k in ("gate_first", "in_place", "view", "resized"):
            g = torch.sigmoid(s)
            if k == "gate_first":
                h = g * h
            elif k == "in_place":
                h = h.clone().mul_(g)
            elif k == "resized":  # as GhostNetV2's attention: a gate computed small, then resized
                h = h * F.interpolate(g, size=h.shape[2:], mode="nearest")
            else:
                h = h * g.flatten(1).view(-1, 4, 1, 1).expand_as(h)
        elif k == "two_activations":
            h = h * F.relu(s)
        elif k == "two_gates":
            h = torch.sigmoid(h) * torch.sigmoid(s)
        else:
            h = h * torch.sigmoid(s)
        return self.fc(h.mean((2, 3)))


def test_silu_written_as_x_times_sigmoid_x_is_silu_passing_relevance() -> None:
    """The gate rule on ``z * sigmoid(z)`` gives what SiLU's pass rule gives: the same relevance."""
    x = inputs(2, 3, 5, 5)
    silu = cnnlens.explain(Product("silu"), x, "lrp", composite=ALL, **TINY).attributions
    written = cnnlens.explain(Product("x_sigmoid_x"), x, "lrp", composite=ALL, **TINY).attributions
    torch.testing.assert_close(written, silu, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["gate_first", "in_place", "view", "resized"])
def test_a_gate_is_recognised_however_the_product_is_written(kind: str) -> None:
    x = inputs(2, 3, 5, 5)
    plain = cnnlens.explain(Product("gate_last"), x, "lrp", composite=ALL).attributions
    other = cnnlens.explain(Product(kind), x, "lrp", composite=ALL).attributions
    torch.testing.assert_close(other, plain, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("kind", "phrase"), [("two_activations", "neither factor is a gate"), ("two_gates", "both factors are gates")]
)
def test_a_product_without_exactly_one_gate_is_refused(kind: str, phrase: str) -> None:
    with pytest.raises(cnnlens.UnsupportedOperationError, match=rf"Tensor.mul \(a product .*; {phrase}"):
        cnnlens.explain(Product(kind), inputs(1, 3, 5, 5), "lrp")


@pytest.mark.parametrize("arch", ["efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf", "convnext_tiny"])
def test_relevance_is_conserved_on_bias_free_torchvision_nets(arch: str) -> None:
    """Squeeze-and-excitation (efficientnet, mobilenet_v3, regnet_y), LayerNorm2d and LayerNorm (convnext),
    SiLU, Hardswish, GELU: the input relevance sums to the logit within 1e-3 (measured: 4e-7 or less)."""
    torchvision = pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(0)
    calibration, x = torch.randn(2, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)
    torch.manual_seed(0)
    net = without_biases(calibrate(getattr(torchvision.models, arch)(weights=None), calibration))
    with torch.no_grad():
        score = net(x).amax(1)
    for composite in ("epsilon", "epsilon_gamma_box"):
        e = cnnlens.explain(net, x, "lrp", composite=composite, zero_bias=True, bounds=(-5.0, 5.0), **TINY)
        torch.testing.assert_close(e.attributions.flatten(1).sum(1), score, rtol=1e-3, atol=0, msg=composite)


@pytest.mark.parametrize(
    "arch", ["mobilenetv3_small_050", "ghostnet_100", "ghostnetv2_100", "rexnet_100", "convnext_nano"]
)
def test_relevance_is_conserved_on_bias_free_timm_nets(arch: str) -> None:
    """timm's squeeze-and-excitation (sigmoid and hardsigmoid gates, GhostNetV2's resized gate), LayerNorm2d:
    refused on main ("no relevance rule for Tensor.mul"); measured within 3e-6 of the logit."""
    timm = pytest.importorskip("timm")
    g = torch.Generator().manual_seed(0)
    calibration, x = torch.randn(2, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)
    torch.manual_seed(0)
    net = without_biases(calibrate(timm.create_model(arch, pretrained=False), calibration))
    with torch.no_grad():
        score = net(x).amax(1)
    e = cnnlens.explain(net, x, "lrp", composite="epsilon", zero_bias=True, **TINY)
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), score, rtol=1e-3, atol=0)
