"""Guided backprop and deconvnet see every call of the forward pass (an allow-list): a ReLU written in any way gets
the rule, linear and structural operations keep their plain gradient, and any other element-wise operation of the
activations raises instead of silently passing its plain gradient.

Truth: the same network written with ``nn.ReLU`` modules (the maps must be equal), Captum 0.9's ``GuidedBackprop``
and ``Deconvolution`` on a network whose only nonlinearities are ``nn.ReLU`` modules (where Captum is right), and a
PReLU unit by hand.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from _nets import init_, inputs
from cnnlens import UnsupportedOperationError

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
RULES = ("guided_backprop", "deconvnet")

GATE_SPELLINGS = {  # every one of these is ReLU (or ReLU6): the rule applies and the map equals nn.ReLU's
    "maximum": lambda t: torch.maximum(t, torch.zeros_like(t)),
    "maximum_scalar_tensor": lambda t: torch.maximum(t, torch.tensor(0.0)),
    "max_other": lambda t: torch.max(t, torch.zeros_like(t)),
    "fmax": lambda t: torch.fmax(torch.zeros_like(t), t),  # the activation as the second operand
    "mask_product": lambda t: t * (t > 0),
    "mask_product_float": lambda t: (t >= 0).float() * t,
    "where": lambda t: torch.where(t > 0, t, 0.0),
    "where_tensor": lambda t: torch.where(t <= 0, torch.zeros_like(t), t),
    "masked_fill": lambda t: t.masked_fill(t < 0, 0.0),
    "threshold": lambda t: F.threshold(t, 0.0, 0.0),
    "nn_threshold": nn.Threshold(0.0, 0.0),
    "clamp_min_method": lambda t: t.clamp_min(0.0),
}
RELU6_SPELLINGS = {  # ReLU6 written as clamp variants and min/max pairs
    "clamp_0_6": lambda t: t.clamp(0, 6),
    "clip": lambda t: torch.clip(t, 0.0, 6.0),
    "clamp_chain": lambda t: t.clamp(max=6.0).clamp_min(0.0),
    "min_max": lambda t: torch.minimum(torch.maximum(t, torch.tensor(0.0)), torch.tensor(6.0)),
    "inplace_clamp": lambda t: t.clone().clamp_(0.0, 6.0),
}
NOT_COVERED = {  # element-wise functions of the activations that are not ReLU-like gates: refused
    "prelu": nn.PReLU(6, init=0.1),
    "abs": torch.abs,
    "square": lambda t: t**2,
    "relu_as_abs": lambda t: (t + t.abs()) / 2,
    "erf": torch.erf,
    "reciprocal": lambda t: 1 / (1 + t.relu()),
    "product": lambda t: t * t.relu(),
    "detached_scale": lambda t: t * t.relu().detach() / (1 + t.relu().detach()),
    "setitem_gate": lambda t: _setitem(t),
    "shift_by_statistic": lambda t: t - t.mean().detach(),
}


def _setitem(t: T) -> T:
    t = t.clone()
    t[t < 0] = 0
    return t


class ActNet(nn.Module):
    """conv, activation, conv, activation (with an addition), mean pooling, linear: one activation spelling."""

    def __init__(self, act) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1), nn.Linear(6, 4)
        self.act = act if isinstance(act, nn.Module) else None
        self.fn = None if isinstance(act, nn.Module) else act

    def a(self, t: T) -> T:
        return self.act(t) if self.act is not None else self.fn(t)

    def forward(self, x: T) -> T:
        h = self.a(self.c1(x))
        h = self.a(self.c2(h) + h)
        return self.fc(h.mean((2, 3)))


def net(act) -> ActNet:
    return init_(ActNet(act), seed=4)


X = inputs(3, scale=2.0)


@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("spelling", [*GATE_SPELLINGS, *RELU6_SPELLINGS])
def test_relu_written_any_way_gets_the_rule(method: str, spelling: str) -> None:
    act, reference = (GATE_SPELLINGS[spelling], nn.ReLU()) if spelling in GATE_SPELLINGS else (
        RELU6_SPELLINGS[spelling], nn.ReLU6())  # fmt: skip
    ours = cnnlens.explain(net(act), X, method, target=1).attributions
    theirs = cnnlens.explain(net(reference), X, method, target=1).attributions
    torch.testing.assert_close(ours, theirs)
    plain = cnnlens.explain(net(reference), X, "saliency", target=1, abs=False).attributions
    assert (theirs - plain).abs().max() > 0.05 * plain.abs().max()  # the rule changes the map: the test can fail


@pytest.mark.filterwarnings("ignore:DeepLIFT attributions miss")  # the fix runs; DeepLIFT says where it is approximate
@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("spelling", list(NOT_COVERED))
def test_other_elementwise_operations_of_activations_raise(method: str, spelling: str) -> None:
    model = net(NOT_COVERED[spelling])
    with pytest.raises(UnsupportedOperationError, match=f"{method} .*(activations|ReLU-like)"):
        cnnlens.explain(model, X, method)
    for fix in ("saliency", "integrated_gradients", "deeplift"):  # the methods the error offers
        assert torch.isfinite(cnnlens.explain(model, X, fix).attributions).all()
    # and the other fix it offers: write the activation as nn.ReLU (the same weights, drawn by name)
    assert torch.isfinite(cnnlens.explain(net(nn.ReLU()), X, method).attributions).all()


@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("spelling", ["prelu", "abs", "square", "product"])
def test_generalize_applies_the_rule_where_the_error_offers_it(method: str, spelling: str) -> None:
    with pytest.raises(UnsupportedOperationError, match="generalize=True"):
        cnnlens.explain(net(NOT_COVERED[spelling]), X, method)
    e = cnnlens.explain(net(NOT_COVERED[spelling]), X, method, generalize=True)
    assert torch.isfinite(e.attributions).all() and e.attributions.abs().sum() > 0


@pytest.mark.parametrize("spelling", ["setitem_gate", "detached_scale", "shift_by_statistic"])
def test_hidden_functions_of_the_activations_raise_even_with_generalize(spelling: str) -> None:
    with pytest.raises(UnsupportedOperationError, match="without a gradient"):
        cnnlens.explain(net(NOT_COVERED[spelling]), X, "guided_backprop", generalize=True)


@pytest.mark.parametrize("v", [0.8, -0.8])
def test_generalized_rules_on_one_prelu_unit_by_hand(v: float) -> None:
    """PReLU with generalize=True: guided passes relu(gradient) times the local slope (1 or a), deconvnet
    relu(gradient); DeepLIFT gets the rescale rule (exact completeness on one unit)."""
    w, b, a = torch.tensor([0.5, -1.0, 0.75, 0.25, -0.5, 1.0]), 0.1, 0.2
    prelu = nn.PReLU(init=a)

    class Unit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prelu = prelu

        def forward(self, x: T) -> T:
            return v * self.prelu(x.flatten(1) @ w[:, None] + b)

    x = torch.randn(3, 1, 2, 3, generator=torch.Generator().manual_seed(2)) * 2
    z = x.flatten(1) @ w + b
    slope = torch.where(z > 0, 1.0, a).view(-1, 1, 1, 1)
    wv = w.view(1, 1, 2, 3)
    guided = cnnlens.explain(Unit(), x, "guided_backprop", target=1, generalize=True).attributions  # 1: the logit
    deconv = cnnlens.explain(Unit(), x, "deconvnet", target=1, generalize=True).attributions
    torch.testing.assert_close(guided, max(v, 0.0) * slope * wv)
    torch.testing.assert_close(deconv, max(v, 0.0) * wv.expand_as(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no completeness warning: PReLU is an activation of the rescale rule
        e = cnnlens.explain(Unit(), x, "deeplift", target=1, baseline=0.0)
    f = lambda t: torch.where(t > 0, t, a * t)  # noqa: E731
    secant = (f(z) - f(torch.full_like(z, b))) / (z - b)  # the baseline 0 gives z0 = b
    torch.testing.assert_close(e.attributions, v * secant.view(-1, 1, 1, 1) * wv * x)


class Zoo(nn.Module):
    """Only nn.ReLU modules are nonlinear; around them many linear and structural operations: BatchNorm, scaling
    and division by constants, a fixed mask buffer (in a product and in where), cat/chunk, padding, interpolation,
    max pooling, a residual sum, reshapes, indexing, mean and sum."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.c3 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 3)
        self.register_buffer("keep", (torch.arange(64).view(8, 8) % 5 != 0).float())

    def forward(self, x: T) -> T:
        h = self.r1(self.n1(self.c1(x)))
        a, b = h.chunk(2, dim=1)
        h = torch.cat([b, a * 0.5], dim=1) / 3.0
        h = torch.where(self.keep.bool(), h, torch.zeros_like(h)) + h * self.keep
        h = F.pad(self.r2(self.c2(h)), (1, 1, 1, 1))[..., 1:-1, 1:-1] + h
        h = F.interpolate(self.pool(h), scale_factor=2, mode="bilinear", align_corners=False)
        h = self.r3(self.c3(h))
        return self.fc(
            torch.stack([h.mean((2, 3)), h.sum((2, 3)) / 64.0, h[:, :, :4].mean((2, 3)), -h.amax((2, 3))], 2).flatten(1)
        )


@pytest.mark.filterwarnings("ignore::UserWarning:captum")
@pytest.mark.parametrize(
    ("method", "captum_name"), [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")]
)
def test_linear_and_structural_operations_keep_their_gradient(method: str, captum_name: str) -> None:
    import captum.attr

    model = init_(Zoo(), seed=6)
    x = inputs(2)
    ours = cnnlens.explain(model, x, method, target=2).attributions
    theirs = getattr(captum.attr, captum_name)(model).attribute(x, target=2)
    torch.testing.assert_close(ours, theirs)
