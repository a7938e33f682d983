"""infidelity and sensitivity_max against Captum (same perturbations), on a linear model by hand; completeness
against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn

import cnnlens
from _nets import inputs, residual_cnn
from cnnlens import CnnlensError
from cnnlens.attribution import Explanation
from cnnlens.quality import score

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor


class Recorder:
    """A perturbation ``(x, generator) -> x~`` that keeps what it returned (to replay it to Captum)."""

    def __init__(self, kind: str, scale: float) -> None:
        self.kind, self.scale, self.seen = kind, scale, []

    def __call__(self, x: T, g: torch.Generator) -> T:
        noise = torch.randn(x.shape, generator=g) if self.kind == "normal" else 2 * torch.rand(x.shape, generator=g) - 1
        xp = x - self.scale * noise
        self.seen.append(xp)
        return xp

    def interleaved(self) -> T:
        """The recorded ``(S, B, ...)`` perturbed inputs in Captum's order (each image repeated S times)."""
        p = torch.stack(self.seen)
        return p.transpose(0, 1).reshape(-1, *p.shape[2:])


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return residual_cnn()


@pytest.fixture(scope="module")
def xs() -> T:
    return inputs(3)


def _ig(model: nn.Module, x: T, target: T) -> T:
    return cnnlens.explain(model, x, "integrated_gradients", target=target, steps=8).attributions


def _saliency(model: nn.Module, x: T, target: T) -> T:
    return cnnlens.explain(model, x, "saliency", target=target).attributions


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("explainer", [_saliency, _ig])
def test_infidelity_equals_captum(net: nn.Module, xs: T, explainer, normalize: bool) -> None:
    rec = Recorder("normal", 0.1)
    s = score("infidelity", net, xs, explainer, samples=7, perturbation=rec, normalize=normalize)
    target = net(xs).argmax(1)
    attr = explainer(net, xs, target)
    replay = rec.interleaved()

    def perturb(x: T) -> tuple[T, T]:
        assert x.shape == replay.shape
        return x - replay, replay

    ref = captum_infidelity(net, perturb, xs, attr, target=target, n_perturb_samples=7, normalize=normalize)
    torch.testing.assert_close(s.values, ref.double(), rtol=1e-5, atol=1e-7)
    assert (s.values > 0).all()
    assert s.passes == 3 + 3 * 7  # the inputs once, then every perturbed image


def test_infidelity_default_perturbation_is_seeded_gaussian(net: nn.Module, xs: T) -> None:
    s = score("infidelity", net, xs, "saliency", samples=4, std=0.3, seed=11)
    g = torch.Generator().manual_seed(11)  # the documented draw: x~ = x - N(0, std^2), one batch per sample
    replay = torch.stack([xs - 0.3 * torch.randn(xs.shape, generator=g) for _ in range(4)])
    replay = replay.transpose(0, 1).reshape(-1, *xs.shape[1:])
    target = net(xs).argmax(1)
    ref = captum_infidelity(
        net, lambda x: (x - replay, replay), xs, _saliency(net, xs, target), target=target, n_perturb_samples=4,
        normalize=True,
    )  # fmt: skip
    torch.testing.assert_close(s.values, ref.double(), rtol=1e-5, atol=1e-7)
    again = score("infidelity", net, xs, "saliency", samples=4, std=0.3, seed=11)
    assert torch.equal(again.values, s.values)
    other = score("infidelity", net, xs, "saliency", samples=4, std=0.3, seed=12)
    assert not torch.equal(other.values, s.values)


class Linear2(nn.Module):
    """Two logits linear in the input: f_0 = w . x + 1, f_1 = -f_0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(4)), requires_grad=False)

    def forward(self, x: T) -> T:
        z = (x * self.w).flatten(1).sum(1) + 1
        return torch.stack([z, -z], 1)


def test_infidelity_of_a_linear_model_by_hand() -> None:
    model, x = Linear2(), inputs(2, h=6, w=6)
    w = model.w.detach()
    # the gradient explains a linear model exactly: a_s = w . I_s = f(x) - f(x - I_s), so infidelity is 0
    exact = score("infidelity", model, x, lambda m, inp, t: w.expand_as(inp), target=0, normalize=False)
    assert exact.values.abs().max() < 1e-8
    # twice the gradient: error (w . I)^2 per sample; the normalized version rescales by beta = 1/2 to 0
    rec = Recorder("normal", 0.2)
    double = score("infidelity", model, x, lambda m, inp, t: 2 * w.expand_as(inp), target=0, normalize=False,
                   perturbation=rec, samples=5)  # fmt: skip
    wi = torch.stack([((x - xp) * w).flatten(1).sum(1) for xp in rec.seen]).double()
    torch.testing.assert_close(double.values, (wi**2).mean(0), rtol=1e-6, atol=1e-9)
    norm = score("infidelity", model, x, lambda m, inp, t: 2 * w.expand_as(inp), target=0, samples=5)
    assert norm.values.abs().max() < 1e-8 and double.values.min() > 0.1
    torch.testing.assert_close(norm.info["beta"], torch.full((2,), 0.5, dtype=torch.float64), rtol=1e-5, atol=0)


def test_infidelity_options_are_checked(net: nn.Module, xs: T) -> None:
    with pytest.raises(CnnlensError, match="samples"):
        score("infidelity", net, xs, "saliency", samples=0)
    with pytest.raises(CnnlensError, match="perturbation"):
        score("infidelity", net, xs, "saliency", perturbation="gauss")
    with pytest.raises(CnnlensError, match="shaped like the inputs"):
        score("infidelity", net, xs, "saliency", perturbation=lambda x, g: x[:1])


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_sensitivity_max_equals_captum(net: nn.Module, xs: T, method: str) -> None:
    rec = Recorder("uniform", 0.05)
    opts = {"steps": 6} if method == "integrated_gradients" else {}
    s = score("sensitivity_max", net, xs, method, samples=5, perturbation=rec, method_options=opts)
    target = net(xs).argmax(1)
    replay = iter([rec.interleaved()])

    def explanation(x: T | tuple, target: T) -> tuple[T]:
        x = x[0] if isinstance(x, tuple) else x
        return (cnnlens.explain(net, x, method, target=target, **opts).attributions,)

    ref = captum_sensitivity_max(explanation, xs, perturb_func=lambda x: next(replay), n_perturb_samples=5,
                                 target=target)  # fmt: skip
    torch.testing.assert_close(s.values, ref.double(), rtol=1e-5, atol=1e-7)
    assert (s.values > 0).all()


def test_sensitivity_max_default_is_seeded_and_zero_for_constant_maps(net: nn.Module, xs: T) -> None:
    a = score("sensitivity_max", net, xs, "saliency", samples=3, radius=0.1, seed=3)
    b = score("sensitivity_max", net, xs, "saliency", samples=3, radius=0.1, seed=3)
    c = score("sensitivity_max", net, xs, "saliency", samples=3, radius=0.1, seed=4)
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)
    # a linear model's gradient does not move with the input: sensitivity 0
    lin = score("sensitivity_max", Linear2(), inputs(2, h=6, w=6), "saliency", samples=3, radius=0.5)
    assert torch.equal(lin.values, torch.zeros(2, dtype=torch.float64))
    # radius 0: the inputs themselves, explained again
    zero = score("sensitivity_max", net, xs, "saliency", samples=2, radius=0.0)
    assert zero.values.abs().max() < 1e-6


def test_sensitivity_max_counts_reexplanations(xs: T) -> None:
    calls = []

    def explainer(model: nn.Module, x: T, target: T) -> T:
        calls.append(x.shape[0])
        return x.clone()

    s = score("sensitivity_max", residual_cnn(), xs, explainer, samples=4, radius=0.1)
    assert sum(calls) == 3 + 3 * 4 and len(calls) == 2  # the inputs, then all 12 perturbed rows in one call
    # attr(x~) - attr(x) = x~ - x: its largest relative size is known from the draws
    g = torch.Generator().manual_seed(0)
    d = torch.stack([(2 * torch.rand(xs.shape, generator=g) - 1) * 0.1 for _ in range(4)])
    expected = (d.flatten(2).norm(dim=2) / xs.flatten(1).norm(dim=1)).max(0).values
    torch.testing.assert_close(s.values, expected.double(), rtol=1e-5, atol=1e-8)


def test_completeness_by_hand(net: nn.Module, xs: T) -> None:
    target = net(xs).argmax(1)
    for method, opts in [("integrated_gradients", {"steps": 5}), ("deeplift", {})]:
        e = cnnlens.explain(net, xs, method, target=target, baseline=0.0, **opts)
        with torch.no_grad():
            fx = net(xs).gather(1, target[:, None])[:, 0].double()
            fb = net(torch.zeros_like(xs)).gather(1, target[:, None])[:, 0].double()
        total = e.attributions.flatten(1).sum(1).double()
        expected = (total - (fx - fb)).abs() / (fx - fb).abs()
        by_name = score("completeness", net, xs, method, method_options={"baseline": 0.0, **opts})
        given = score("completeness", net, xs, e, target=target)
        torch.testing.assert_close(by_name.values, expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(given.values, by_name.values)
    # IG with few steps on a ReLU net is visibly incomplete; more steps close the gap
    few = score("completeness", net, xs, "integrated_gradients", method_options={"steps": 2})
    many = score("completeness", net, xs, "integrated_gradients", method_options={"steps": 64})
    assert many.mean < few.mean


def test_completeness_formula_on_a_handmade_explanation(net: nn.Module, xs: T) -> None:
    x = xs[:2]
    attr = torch.zeros(2, 3, 8, 8)
    attr[0, 0, 0, 0], attr[1, 1, 2, 3] = 2.0, 3.0
    e = Explanation(attr, "handmade", torch.tensor([1, 2]), torch.zeros(2, 5), 0, delta=torch.tensor([0.5, -1.0]))
    s = score("completeness", net, x, e, target=[1, 2])
    # f(x) - f(b) = sum - delta: 1.5 and 4.0
    torch.testing.assert_close(s.values, torch.tensor([0.5 / 1.5, 1.0 / 4.0], dtype=torch.float64))
    e.delta = torch.tensor([2.0, 0.0])  # f(x) = f(b): undefined
    s = score("completeness", net, x, e, target=[1, 2])
    assert torch.isnan(s.values[0]) and s.values[1] == 0


def test_completeness_needs_a_delta(net: nn.Module, xs: T) -> None:
    with pytest.raises(CnnlensError, match="integrated_gradients"):
        score("completeness", net, xs, "saliency")
    with pytest.raises(CnnlensError, match="delta"):
        score("completeness", net, xs, _saliency)
