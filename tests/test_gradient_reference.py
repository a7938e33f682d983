"""Reference tests for the gradient attribution methods, against truth that does not come from cnnlens.

* Captum 0.9 on a residual ReLU CNN with distinct, non-inplace ``nn.ReLU`` modules, where Captum is correct;
  the same CNN written with in-place, reused or functional ReLUs must give us the same numbers.
* Values computed by hand on tiny models (linear, one or two hidden layers, max pooling).
* Axioms: completeness of IG / DeepLIFT / DeepLIFT-SHAP, DeepLIFT-SHAP as a mean of DeepLIFTs, GradientSHAP
  tending to IG, adaptive IG reaching its tolerance.
* SmoothGrad / SmoothGrad² / VarGrad against an independent loop over the same noise; batching and pass
  accounting.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import _nets
import cnnlens
from cnnlens import CnnlensWarning, UnsupportedOperationError
from cnnlens.engine import Context

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:captum"),  # its notes about hooks and requires_grad
    pytest.mark.usefixtures("one_thread"),
]
T = torch.Tensor
TARGETS = torch.tensor([1, 3, 4])
ALL_METHODS = tuple(m.name for m in cnnlens.methods("gradient"))


def assert_close(ours: T, theirs: T, rtol: float = 1e-5) -> None:
    """Equal within ``rtol`` relative to each value and to the largest magnitude of the reference."""
    theirs = theirs.detach()
    scale = max(theirs.abs().max().item(), 1e-12)
    torch.testing.assert_close(ours.detach(), theirs, rtol=rtol, atol=rtol * scale)


def scores(model: torch.nn.Module, x: T, target: T) -> T:
    """Target logit of every row, computed directly on the model (no cnnlens)."""
    with torch.no_grad():
        return model(x).gather(1, target.view(-1, 1))[:, 0]


def plain_grad(model: torch.nn.Module, x: T, target: T) -> T:
    """d logit[target] / d x with plain autograd, one row at a time."""
    out = []
    for xi, ti in zip(x, target, strict=True):
        xi = xi[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0, ti], xi)
        out.append(g[0])
    return torch.stack(out)


@pytest.fixture(scope="module")
def net() -> _nets.ResidualCNN:
    return _nets.residual_cnn("module")


@pytest.fixture(scope="module")
def x() -> T:
    return _nets.inputs(3)


@pytest.fixture(scope="module")
def x0() -> T:
    return _nets.inputs(3, seed=7, scale=0.3)


@pytest.fixture(scope="module")
def dist() -> T:
    """A baseline distribution of K = 4 references, shared by all images."""
    return _nets.inputs(4, seed=11, scale=0.5)


def _options(method: str, x0: T, dist: T) -> dict:
    """Small but non-trivial settings per method (baselines where needed)."""
    return {
        "integrated_gradients": {"baseline": x0, "steps": 8},
        "gradient_shap": {"baseline": dist, "samples": 6, "stdev": 0.1},
        "deeplift": {"baseline": x0},
        "deeplift_shap": {"baseline": dist},
        "saliency": {"abs": False},
    }.get(method, {})


# =========================================================================================================
# 1. Captum 0.9 equality on the residual ReLU CNN (distinct nn.ReLU modules: where Captum is correct)
# =========================================================================================================

try:
    import captum.attr as captum_attr
except ImportError:  # captum is a dev extra; the other tests do not need it
    captum_attr = None
needs_captum = pytest.mark.skipif(captum_attr is None, reason="captum (dev extra) is not installed")


@needs_captum
@pytest.mark.parametrize("absolute", [True, False])
def test_saliency_equals_captum(net, x, absolute) -> None:
    theirs = captum_attr.Saliency(net).attribute(x.clone(), target=TARGETS.tolist(), abs=absolute)
    ours = cnnlens.explain(net, x, "saliency", target=TARGETS, abs=absolute)
    assert_close(ours.attributions, theirs)
    assert ours.passes == 3


@needs_captum
def test_input_x_gradient_equals_captum(net, x) -> None:
    theirs = captum_attr.InputXGradient(net).attribute(x.clone(), target=TARGETS.tolist())
    assert_close(cnnlens.explain(net, x, "input_x_gradient", target=TARGETS).attributions, theirs)


@needs_captum
@pytest.mark.parametrize(
    ("ours_name", "captum_name"), [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")]
)
def test_guided_and_deconvnet_equal_captum(net, x, ours_name, captum_name) -> None:
    theirs = getattr(captum_attr, captum_name)(net).attribute(x.clone(), target=TARGETS.tolist())
    ours = cnnlens.explain(net, x, ours_name, target=TARGETS).attributions
    assert_close(ours, theirs)
    # and the rule matters on this net: the result is not the plain gradient
    assert (ours - plain_grad(net, x, TARGETS)).abs().max() > 0.1 * ours.abs().max()


@needs_captum
@pytest.mark.parametrize("quadrature", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
@pytest.mark.parametrize("steps", [5, 16])
def test_integrated_gradients_equals_captum(net, x, x0, quadrature, steps) -> None:
    attr, delta = captum_attr.IntegratedGradients(net).attribute(
        x.clone(), baselines=x0, target=TARGETS.tolist(), n_steps=steps, method=quadrature,
        return_convergence_delta=True,
    )  # fmt: skip
    ours = cnnlens.explain(
        net, x, "integrated_gradients", baseline=x0, target=TARGETS, steps=steps, quadrature=quadrature
    )
    assert_close(ours.attributions, attr)
    torch.testing.assert_close(ours.delta, delta.float(), rtol=1e-4, atol=1e-5 * attr.abs().sum().item())


@needs_captum
def test_deeplift_equals_captum(net, x, x0) -> None:
    attr, delta = captum_attr.DeepLift(net).attribute(
        x.clone(), baselines=x0, target=TARGETS.tolist(), return_convergence_delta=True
    )
    ours = cnnlens.explain(net, x, "deeplift", baseline=x0, target=TARGETS)
    assert_close(ours.attributions, attr)
    torch.testing.assert_close(ours.delta, delta, rtol=0, atol=1e-5)
    # DeepLIFT is not input x gradient on this net (the rescale rule does something)
    assert (ours.attributions - (x - x0) * plain_grad(net, x, TARGETS)).abs().max() > 1e-2


@needs_captum
def test_deeplift_shap_equals_captum(net, x, dist) -> None:
    theirs = captum_attr.DeepLiftShap(net).attribute(x.clone(), baselines=dist, target=TARGETS.tolist())
    ours = cnnlens.explain(net, x, "deeplift_shap", baseline=dist, target=TARGETS)
    assert_close(ours.attributions, theirs)


@needs_captum
@pytest.mark.parametrize("stdev", [0.0, 0.25])
def test_gradient_shap_equals_captum_with_the_same_draws(net, x, dist, stdev, monkeypatch) -> None:
    """Captum's GradientShap = NoiseTunnel(smoothgrad) over InputBaselineXGradient. Its draws, read from
    captum 0.9 (noise_tunnel.py, _utils/common.py, gradient_shap.py): per batch of n_samples,
    ``_expand_and_update_baselines`` -> ``np.random.choice(K, n_samples * B)``, then
    ``_add_noise_to_input`` -> ``torch.normal(0, stdev)`` of shape ``(B * n_samples, C, H, W)`` on the global
    torch RNG (rows image-major, ``repeat_interleave``), then ``InputBaselineXGradient`` ->
    ``np.random.uniform(0, 1, B * n_samples)``. We replay them through ``Context.randn / randint / rand``.
    """
    b, k, s = x.shape[0], dist.shape[0], 7
    np.random.seed(123)
    torch.manual_seed(456)
    attr = captum_attr.GradientShap(net).attribute(
        x.clone(), baselines=dist, n_samples=s, stdevs=stdev, target=TARGETS.tolist()
    )
    np.random.seed(123)
    pick = torch.as_tensor(np.random.choice(k, s * b))
    alpha = torch.tensor(np.random.uniform(0.0, 1.0, b * s), dtype=x.dtype)
    torch.manual_seed(456)
    noise = torch.normal(0, torch.tensor(stdev).repeat((b * s, *x.shape[1:])))
    calls = []

    def randn(self, *shape):
        calls.append("randn")
        assert shape == (b * s, *x.shape[1:])
        return noise / stdev if stdev > 0 else torch.zeros(shape)  # the method multiplies by stdev

    def randint(self, high, *shape):
        calls.append("randint")
        assert (high, shape) == (k, (b * s,))
        return pick.clone()

    def rand(self, *shape):
        calls.append("rand")
        assert shape == (b * s,)
        return alpha.clone()

    monkeypatch.setattr(Context, "randn", randn)
    monkeypatch.setattr(Context, "randint", randint)
    monkeypatch.setattr(Context, "rand", rand)
    ours = cnnlens.explain(net, x, "gradient_shap", baseline=dist, target=TARGETS, samples=s, stdev=stdev)
    assert calls == ["randn", "randint", "rand"]
    assert_close(ours.attributions, attr)


def test_gradient_shap_matches_an_independent_loop(net, x, dist) -> None:
    """Our own draw order (documented in gradient_shap.py), replayed from the seed in a plain loop."""
    s, stdev, seed = 5, 0.2, 9
    ours = cnnlens.explain(net, x, "gradient_shap", baseline=dist, target=TARGETS, samples=s, stdev=stdev, seed=seed)
    g = torch.Generator().manual_seed(seed)
    b = x.shape[0]
    noise = torch.randn(b * s, *x.shape[1:], generator=g) * stdev
    pick = torch.randint(dist.shape[0], (b * s,), generator=g)
    alpha = torch.rand(b * s, generator=g)
    expected = torch.zeros_like(x)
    for r in range(b * s):
        i = r // s
        noisy, ref = x[i] + noise[r], dist[pick[r]]
        point = ref + alpha[r] * (noisy - ref)
        expected[i] += (noisy - ref) * plain_grad(net, point[None], TARGETS[i : i + 1])[0] / s
    assert_close(ours.attributions, expected)
    assert ours.delta is None  # with noise there is no completeness to report


@pytest.mark.parametrize("kind", ["inplace", "reused", "functional", "mixed"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_relu_written_any_way_gives_the_same_result(x, x0, dist, kind, method) -> None:
    reference = cnnlens.explain(_nets.residual_cnn("module"), x, method, target=TARGETS, **_options(method, x0, dist))
    variant = _nets.residual_cnn(kind)
    ours = cnnlens.explain(variant, x, method, target=TARGETS, **_options(method, x0, dist))
    assert_close(ours.attributions, reference.attributions)
    if reference.delta is not None:
        torch.testing.assert_close(ours.delta, reference.delta, rtol=0, atol=1e-5)
    # nothing was left on the model
    assert all(not m._forward_hooks and not m._backward_hooks for m in variant.modules())


@needs_captum
def test_captum_is_blind_to_functional_and_reused_relus(x, x0) -> None:
    """Documents why the variants matter: Captum's module hooks miss F.relu and reject a reused module."""
    functional, reused = _nets.residual_cnn("functional"), _nets.residual_cnn("reused")
    theirs = captum_attr.GuidedBackprop(functional).attribute(x.clone(), target=TARGETS.tolist())
    torch.testing.assert_close(theirs, plain_grad(functional, x, TARGETS))  # silently the plain gradient
    with pytest.raises(RuntimeError, match="used more than once"):
        captum_attr.DeepLift(reused).attribute(x.clone(), baselines=x0, target=TARGETS.tolist())


@needs_captum
def test_captum_deeplift_breaks_completeness_with_max_pooling() -> None:
    """Documents the Captum 0.9 bug our max-pool rule avoids (ours: see the completeness tests below)."""
    model, t = _nets.maxpool_net(), torch.tensor([0, 2, 4])
    x, x0 = _nets.inputs(3, scale=2.5), _nets.inputs(3, seed=7, scale=0.5)
    _, theirs = captum_attr.DeepLift(model).attribute(
        x.clone(), baselines=x0, target=t.tolist(), return_convergence_delta=True
    )
    ours = cnnlens.explain(model, x, "deeplift", baseline=x0, target=t).delta
    gap = scores(model, x, t) - scores(model, x0, t)
    assert (theirs.abs() > 0.05 * gap.abs()).all(), (theirs, gap)
    assert (ours.abs() <= 1e-4 * gap.abs() + 1e-6).all(), (ours, gap)


# =========================================================================================================
# Riemann trapezoid: exact integration (ours) vs Captum's weights that sum to (n - 1) / n
# =========================================================================================================


def _quadratic_model(w: T) -> _nets.Functional:
    """f(x) = sum(w * x**2) (one logit): along a straight path the IG integrand is linear in alpha."""
    return _nets.Functional(lambda t: (w * t**2).flatten(1).sum(1, keepdim=True))


@needs_captum
@pytest.mark.parametrize("steps", [2, 3, 10])
def test_trapezoid_is_exact_for_a_linear_integrand_and_captum_misses_by_n_minus_1_over_n(x, x0, steps) -> None:
    w = _nets.inputs(1, seed=5)[0]
    model = _quadratic_model(w)
    exact = w * (x**2 - x0**2)  # IG of sum(w x^2) from x0 to x, per feature
    ours = cnnlens.explain(
        model, x, "integrated_gradients", baseline=x0, target=1, steps=steps, quadrature="riemann_trapezoid"
    )
    assert_close(ours.attributions, exact)
    assert ours.delta.abs().max() <= 1e-5 * exact.abs().sum()
    theirs = captum_attr.IntegratedGradients(model).attribute(
        x.clone(), baselines=x0, target=0, n_steps=steps, method="riemann_trapezoid"
    )
    assert_close(theirs, exact * (steps - 1) / steps)  # Captum bug: its trapezoid weights sum to (n-1)/n


@pytest.mark.parametrize("steps", [2, 7])
def test_riemann_rules_on_a_linear_integrand_by_hand(x, x0, steps) -> None:
    """h(a) = A + B a: left gives A + B (n-1)/(2n), right A + B (n+1)/(2n), middle and Gauss-Legendre exact."""
    w = _nets.inputs(1, seed=5)[0]
    model, d = _quadratic_model(w), x - x0
    expected = {
        "riemann_left": w * d * (2 * x0 + d * (steps - 1) / steps),
        "riemann_right": w * d * (2 * x0 + d * (steps + 1) / steps),
        "riemann_middle": w * (x**2 - x0**2),
        "gausslegendre": w * (x**2 - x0**2),
    }
    for quadrature, value in expected.items():
        ours = cnnlens.explain(
            model, x, "integrated_gradients", baseline=x0, target=1, steps=steps, quadrature=quadrature
        )
        assert_close(ours.attributions, value)


# =========================================================================================================
# 2. Hand-computed values on tiny models
# =========================================================================================================


@pytest.fixture(scope="module")
def linear():
    g = torch.Generator().manual_seed(3)
    w, c = torch.randn(4, 12, generator=g), torch.randn(4, generator=g)
    x = torch.randn(3, 3, 2, 2, generator=g)
    x0 = torch.randn(3, 3, 2, 2, generator=g)
    dist = torch.randn(5, 3, 2, 2, generator=g)
    model = _nets.Functional(lambda t: t.flatten(1) @ w.T + c)
    return model, w, x, x0, dist


def test_linear_model_hand_values(linear) -> None:
    model, w, x, x0, dist = linear
    t = torch.tensor([2, 0, 3])
    wt = w[t].view_as(x)
    e = lambda method, **kw: cnnlens.explain(model, x, method, target=t, **kw)  # noqa: E731
    assert_close(e("saliency").attributions, wt.abs())
    assert_close(e("saliency", abs=False).attributions, wt)
    assert_close(e("input_x_gradient").attributions, x * wt)
    assert_close(e("guided_backprop").attributions, wt)  # no activation: the plain gradient
    assert_close(e("deconvnet").attributions, wt)
    for quadrature in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
        for steps in (2, 5):
            r = e("integrated_gradients", baseline=x0, steps=steps, quadrature=quadrature)
            assert_close(r.attributions, (x - x0) * wt)
            assert r.delta.abs().max() < 1e-5
    assert_close(e("integrated_gradients", baseline=x0, steps=1).attributions, (x - x0) * wt)
    r = e("deeplift", baseline=x0)
    assert_close(r.attributions, (x - x0) * wt)
    assert r.delta.abs().max() < 1e-5
    r = e("deeplift_shap", baseline=dist)
    assert_close(r.attributions, (x - dist.mean(0)) * wt)
    assert r.delta.abs().max() < 1e-5
    r = e("gradient_shap", baseline=x0[:1], samples=3)  # one baseline, no noise: any alpha gives (x - x0) w
    assert_close(r.attributions, (x - x0[:1]) * wt)
    assert r.delta.abs().max() < 1e-5


def _unit_inputs(w: T, b: float, zs: list[float], seed: int) -> T:
    """Inputs (len(zs), 1, 2, 3) with w . x + b == z exactly enough, plus a part orthogonal to w."""
    g = torch.Generator().manual_seed(seed)
    wf = w.flatten()
    r = torch.randn(len(zs), wf.numel(), generator=g)
    r = r - (r @ wf)[:, None] * wf / (wf @ wf)
    along = torch.tensor(zs)[:, None] - b
    return (along * wf / (wf @ wf) + r).view(len(zs), 1, 2, 3)


@pytest.mark.parametrize("v", [1.5, -1.5])
def test_relu6_unit_by_hand(v) -> None:
    """f(x) = v relu6(w.x + b) for z = w.x + b inside (0, 6), above 6 and below 0."""
    w, b = torch.tensor([0.5, -1.0, 0.75, 0.25, -0.5, 1.0]), 0.3
    model = _nets.Functional(lambda t: v * F.relu6(t.flatten(1) @ w[:, None] + b))
    zs, z0 = [2.5, 8.0, -1.0], 1.0
    x = _unit_inputs(w, b, zs, seed=0)
    x0 = _unit_inputs(w, b, [z0] * 3, seed=1)
    z = (x.flatten(1) @ w + b).view(-1, 1, 1, 1)
    wv = w.view(1, 1, 2, 3)
    gate = ((z > 0) & (z < 6)).float()
    e = lambda method, **kw: cnnlens.explain(model, x, method, target=1, **kw)  # noqa: E731
    assert_close(e("saliency", abs=False).attributions, v * gate * wv)
    assert_close(e("guided_backprop").attributions, max(v, 0.0) * gate * wv)
    assert_close(e("deconvnet").attributions, max(v, 0.0) * wv.expand_as(x))  # ignores the gate
    if v < 0:  # guided backprop and deconvnet zero a negative signal entirely
        assert e("guided_backprop").attributions.abs().max() == 0
        assert e("deconvnet").attributions.abs().max() == 0
    secant = (F.relu6(z) - F.relu6(torch.tensor(z0))) / (z - z0)  # 1, 5/7, 1/2
    torch.testing.assert_close(secant.flatten(), torch.tensor([1.0, 5 / 7, 0.5]))
    r = e("deeplift", baseline=x0)
    assert_close(r.attributions, (x - x0) * wv * v * secant)
    assert r.delta.abs().max() < 1e-5


def test_two_layer_relu_net_guided_deconv_deeplift_by_hand() -> None:
    """f(x) = u . relu(V relu(W x + b) + c): the sign clamp at the inner layer matters."""
    g = torch.Generator().manual_seed(4)
    W, b = torch.randn(5, 6, generator=g), torch.randn(5, generator=g) * 0.3
    V, c = torch.randn(4, 5, generator=g), torch.randn(4, generator=g) * 0.3
    u = torch.tensor([1.0, -2.0, 0.5, -0.7])
    model = _nets.Functional(
        lambda t: (torch.relu(F.linear(torch.relu(F.linear(t.flatten(1), W, b)), V, c)) * u).sum(1, keepdim=True)
    )
    x = torch.randn(6, 1, 2, 3, generator=g)
    x0 = torch.randn(6, 1, 2, 3, generator=g) * 0.5
    xf, x0f = x.flatten(1), x0.flatten(1)
    z1, z10 = xf @ W.T + b, x0f @ W.T + b
    z2, z20 = z1.relu() @ V.T + c, z10.relu() @ V.T + c
    on1, on2 = (z1 > 0).float(), (z2 > 0).float()
    relu = lambda t: t.clamp(min=0)  # noqa: E731
    grad = ((on2 * u) @ V * on1) @ W
    guided = (relu((on2 * relu(u)) @ V) * on1) @ W
    deconv = relu(relu(u).expand_as(z2) @ V) @ W
    m1 = (z1.relu() - z10.relu()) / (z1 - z10)
    m2 = (z2.relu() - z20.relu()) / (z2 - z20)
    deeplift = (xf - x0f) * (((m2 * u) @ V * m1) @ W)
    e = lambda method, **kw: cnnlens.explain(model, x, method, target=1, **kw).attributions.flatten(1)  # noqa: E731
    assert_close(e("saliency", abs=False), grad)
    assert_close(e("guided_backprop"), guided)
    assert_close(e("deconvnet"), deconv)
    assert_close(e("deeplift", baseline=x0), deeplift)
    # the three differ on this net, so the checks above are not vacuous
    assert (guided - grad).abs().max() > 0.1 and (deconv - guided).abs().max() > 0.1


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "silu", "gelu", "elu", "softplus", "leaky_relu", "hardswish"])
def test_deeplift_rescale_on_one_smooth_unit(act) -> None:
    """f(x) = v act(w.x + b): DeepLIFT = (x - x0) w v (act(z) - act(z0)) / (z - z0); the derivative if z = z0."""
    fn = {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu, "gelu": F.gelu, "elu": F.elu,
        "softplus": F.softplus, "leaky_relu": lambda t: F.leaky_relu(t, 0.1), "hardswish": F.hardswish,
    }[act]  # fmt: skip
    w, b, v = torch.tensor([1.0, 1.0, 2.0, 0.5]), -0.25, -1.25
    model = _nets.Functional(lambda t: v * fn(t.flatten(1) @ w[:, None] + b))
    # dyadic values: w . x is exact in float32, so the last pair has z == z0 exactly
    x = torch.tensor([[0.75, 0.0, -0.5, 1.0], [2.5, -1.0, 1.5, 0.5], [-1.5, -2.0, 0.25, -3.0], [0.75, 0.0, -0.5, 1.0]])
    x0 = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, -0.5, 1.0], [1.0, 0.0, 0.5, 0.0], [0.25, 0.5, -0.5, 1.0]])
    z, z0 = x @ w + b, x0 @ w + b
    assert z[3] == z0[3] and (x[3] != x0[3]).any()
    zd = z.clone().requires_grad_(True)
    (deriv,) = torch.autograd.grad(fn(zd).sum(), zd)
    slope = torch.where(z == z0, deriv, (fn(z) - fn(z0)) / torch.where(z == z0, 1.0, z - z0))
    expected = (x - x0) * w * v * slope[:, None]
    r = cnnlens.explain(model, x.view(4, 1, 2, 2), "deeplift", baseline=x0.view(4, 1, 2, 2), target=1)
    assert_close(r.attributions.flatten(1), expected)
    assert r.delta.abs().max() < 1e-5


def _maxpool_by_hand(x: T, x0: T, c: T, k: int, s: int, p: int) -> T:
    """DeepLIFT of sum(c * maxpool(x)) for one (H, W) plane: each window's difference y - y0 goes to the
    arg-max of x if y >= y0, else to the arg-max of x0 (windows over the -inf padded plane)."""
    h, w = x.shape
    pad = lambda t: F.pad(t, (p, p, p, p), value=float("-inf"))  # noqa: E731
    xp, x0p = pad(x), pad(x0)
    out = torch.zeros(h + 2 * p, w + 2 * p, dtype=torch.float64)
    for oi in range(c.shape[0]):
        for oj in range(c.shape[1]):
            win = (slice(oi * s, oi * s + k), slice(oj * s, oj * s + k))
            a, a0 = xp[win], x0p[win]
            y, y0 = a.max(), a0.max()
            src = a if y >= y0 else a0
            i, j = divmod(int(src.argmax()), k)
            out[oi * s + i, oj * s + j] += float(c[oi, oj]) * float(y - y0)
    return out[p : p + h, p : p + w].float()


@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_deeplift_maxpool_rule_by_hand(k, s, p) -> None:
    g = torch.Generator().manual_seed(k * 10 + s + p)
    h = 6
    x, x0 = torch.randn(2, 2, h, h, generator=g), torch.randn(2, 2, h, h, generator=g)
    if (k, s, p) == (2, 2, 0):  # a window where input and reference maxima tie at different positions
        x[0, 0, :2, :2] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        x0[0, 0, :2, :2] = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    out = (h + 2 * p - k) // s + 1
    c = torch.randn(2, out, out, generator=g)
    model = _nets.Functional(lambda t: (F.max_pool2d(t, k, s, p) * c).flatten(1).sum(1, keepdim=True))
    r = cnnlens.explain(model, x, "deeplift", baseline=x0, target=1)
    expected = torch.stack(
        [torch.stack([_maxpool_by_hand(x[i, ch], x0[i, ch], c[ch], k, s, p) for ch in range(2)]) for i in range(2)]
    )
    assert_close(r.attributions, expected)
    assert r.delta.abs().max() < 1e-5
    # the input and the reference have their maxima at different places in some windows
    _, i_in = F.max_pool2d(x, k, s, p, return_indices=True)
    _, i_ref = F.max_pool2d(x0, k, s, p, return_indices=True)
    assert (i_in != i_ref).any()


# =========================================================================================================
# 3. Axioms
# =========================================================================================================

COMPLETENESS_NETS = {
    **{act: (lambda a=act: _nets.act_net(a)) for act in _nets.ACTIVATIONS},
    **{f"residual_{k}": (lambda k=k: _nets.residual_cnn(k)) for k in _nets.RELU_KINDS},
    "maxpool": _nets.maxpool_net,
}


@pytest.mark.parametrize("name", list(COMPLETENESS_NETS))
def test_deeplift_and_deeplift_shap_completeness(name, dist) -> None:
    model = COMPLETENESS_NETS[name]()
    x = _nets.inputs(3, scale=2.5)  # wide enough to saturate ReLU6 / sigmoid / tanh somewhere
    x0 = _nets.inputs(3, seed=7, scale=0.5)
    t = torch.tensor([0, 2, 4])
    fx = scores(model, x, t)
    r = cnnlens.explain(model, x, "deeplift", baseline=x0, target=t)
    gap = fx - scores(model, x0, t)
    expected_delta = r.attributions.flatten(1).sum(1) - gap
    torch.testing.assert_close(r.delta, expected_delta, rtol=0, atol=1e-5 * gap.abs().max().item())
    assert (r.delta.abs() <= 1e-4 * gap.abs() + 1e-6).all(), (r.delta, gap)
    r = cnnlens.explain(model, x, "deeplift_shap", baseline=dist, target=t)
    ref = torch.stack([scores(model, dist, ti.expand(dist.shape[0])).mean() for ti in t])
    gap = fx - ref
    torch.testing.assert_close(
        r.delta, r.attributions.flatten(1).sum(1) - gap, rtol=0, atol=1e-5 * gap.abs().max().item()
    )
    assert (r.delta.abs() <= 1e-4 * gap.abs() + 1e-6).all(), (r.delta, gap)


@pytest.mark.parametrize("batch_size", [None, 2, 3])
def test_deeplift_scores_the_baselines_for_the_predicted_classes(batch_size) -> None:
    """No target: the baselines, scored in the passes of the (input, baseline) pairs, are scored for each input's
    predicted class (not the baseline's own), whatever the chunking."""
    net, x = _nets.act_net("relu6"), _nets.inputs(3, scale=2.5)
    x0 = x.roll(1, 0)  # each baseline is another input
    r = cnnlens.explain(net, x, "deeplift", baseline=x0, batch_size=batch_size)
    with torch.no_grad():
        predicted = net(x).argmax(1)
    torch.testing.assert_close(r.target, predicted)
    gap = scores(net, x, predicted) - scores(net, x0, predicted)
    torch.testing.assert_close(r.delta, r.attributions.flatten(1).sum(1) - gap, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert (net(x0).argmax(1) != predicted).any()  # the baselines' own top classes would give other scores


class _InPlaceAfter(torch.nn.Module):
    """Changes an activation's output in place after the activation ran (``in_place=False``: the same function
    written without it)."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc, self.in_place = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(4, 3), in_place

    def forward(self, x: T) -> T:
        h = torch.relu(self.conv(x))
        h = h.mul_(2).add_(1) if self.in_place else h * 2 + 1
        return self.fc(torch.relu(h - 1.5).mean((2, 3)))


def test_deeplift_when_the_model_changes_a_reference_value_in_place() -> None:
    """The reference pass's activation output is changed in place later in the pass: DeepLIFT records copies and
    gives what it gives on the same function written without in-place operations, complete."""
    x = _nets.inputs(3)
    x0 = torch.full_like(x, 0.2)
    for method, base in (("deeplift", x0), ("deeplift_shap", torch.stack([x0, -x0], 1))):
        ours = cnnlens.explain(_InPlaceAfter(True), x, method, baseline=base, target=1)
        plain = cnnlens.explain(_InPlaceAfter(False), x, method, baseline=base, target=1)
        assert_close(ours.attributions, plain.attributions, rtol=1e-6)
        assert (ours.delta.abs() < 1e-5).all()


class _Branches(torch.nn.Module):
    """Takes another branch (and runs another number of activations) when the image is bright."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        h = torch.relu(self.conv(x))
        if float(x.detach().mean()) > 0.5:
            h = torch.relu(h - 0.1)
        return self.fc(h.mean((2, 3)))


def test_deeplift_refuses_a_model_that_runs_other_activations_on_the_baseline() -> None:
    from test_contract import _assert_unchanged, _snapshot

    x, model = torch.full((1, 3, 8, 8), 0.9), _Branches().train()
    model.fc.weight.requires_grad_(False)
    before = _snapshot(model)
    with pytest.raises(cnnlens.CnnlensError, match="other activations on the baseline") as err:
        cnnlens.explain(model, x, "deeplift", baseline="zero")
    _assert_unchanged(model, before)  # raised mid-run: no hook, flag, requires_grad or value left changed
    assert "integrated_gradients" in str(err.value)
    e = cnnlens.explain(_Branches(), x, "integrated_gradients", baseline="zero", target=0)  # the advice runs
    gap = scores(_Branches(), x, torch.tensor([0])) - scores(_Branches(), torch.zeros_like(x), torch.tensor([0]))
    torch.testing.assert_close(e.delta, e.attributions.flatten(1).sum(1) - gap, rtol=0, atol=1e-5)  # delta is honest
    same = cnnlens.explain(_Branches(), x, "deeplift", baseline=torch.full_like(x, 0.6))  # the same branch: fine
    assert same.delta.abs().item() < 1e-5


def test_relu6_net_saturates_somewhere() -> None:
    """The ReLU6 completeness case above is not vacuous: some pre-activations exceed 6."""
    model, seen = _nets.act_net("relu6"), []
    model.a1.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    model.a2.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        model(_nets.inputs(3, scale=2.5))
    assert any((s > 6).any() for s in seen) and any((s < 0).any() for s in seen)


def test_ig_delta_is_the_completeness_error_and_shrinks_with_steps(x, x0) -> None:
    model = _nets.act_net("tanh")
    t = TARGETS
    gap = scores(model, x, t) - scores(model, x0, t)
    errors = {}
    for quadrature in ("gausslegendre", "riemann_trapezoid", "riemann_middle"):
        for steps in (2, 8, 32):
            r = cnnlens.explain(
                model, x, "integrated_gradients", baseline=x0, target=t, steps=steps, quadrature=quadrature
            )
            torch.testing.assert_close(r.delta, r.attributions.flatten(1).sum(1) - gap, rtol=0, atol=1e-5)
            errors[quadrature, steps] = r.delta.abs().max().item()
        assert errors[quadrature, 2] > errors[quadrature, 8] > errors[quadrature, 32], errors
    assert errors["gausslegendre", 32] < 1e-4 * gap.abs().min()


def test_ig_delta_on_the_residual_relu_net(net, x, x0) -> None:
    gap = scores(net, x, TARGETS) - scores(net, x0, TARGETS)
    coarse = cnnlens.explain(net, x, "integrated_gradients", baseline=x0, target=TARGETS, steps=4)
    fine = cnnlens.explain(net, x, "integrated_gradients", baseline=x0, target=TARGETS, steps=128)
    for r in (coarse, fine):
        torch.testing.assert_close(r.delta, r.attributions.flatten(1).sum(1) - gap, rtol=0, atol=1e-5)
    assert fine.delta.abs().max() < coarse.delta.abs().max()
    assert (fine.delta.abs() <= 0.01 * gap.abs()).all()


def test_deeplift_shap_is_the_mean_of_deeplift_runs(net, x, dist) -> None:
    shap = cnnlens.explain(net, x, "deeplift_shap", baseline=dist, target=TARGETS)
    runs = [cnnlens.explain(net, x, "deeplift", baseline=ref, target=TARGETS) for ref in dist]
    assert_close(shap.attributions, torch.stack([r.attributions for r in runs]).mean(0))
    torch.testing.assert_close(shap.delta, torch.stack([r.delta for r in runs]).mean(0), rtol=0, atol=1e-5)
    # a per-image distribution (B, K, C, H, W) works the same way
    per_image = torch.stack([dist, dist.flip(0), dist.roll(1, 0)])
    shap = cnnlens.explain(net, x, "deeplift_shap", baseline=per_image, target=TARGETS)
    for i in range(3):
        runs = [cnnlens.explain(net, x[i : i + 1], "deeplift", baseline=ref, target=TARGETS[i]) for ref in per_image[i]]
        assert_close(shap.attributions[i], torch.stack([r.attributions[0] for r in runs]).mean(0))


def test_gradient_shap_with_one_baseline_and_no_noise_tends_to_ig(x, x0) -> None:
    model = _nets.act_net("silu")
    ig = cnnlens.explain(model, x, "integrated_gradients", baseline=x0, target=TARGETS, steps=64).attributions
    # one baseline per image: x0 as a (B, 1, C, H, W) distribution
    errs = []
    for samples in (16, 2000):
        gs = cnnlens.explain(model, x, "gradient_shap", baseline=x0[:, None], target=TARGETS, samples=samples)
        errs.append(((gs.attributions - ig).flatten(1).norm(dim=1) / ig.flatten(1).norm(dim=1)).max().item())
    assert errs[1] < 0.05, errs
    assert errs[1] < errs[0]


@pytest.mark.parametrize("model_name", ["residual_module", "relu6", "maxpool"])
def test_adaptive_ig_reaches_its_tolerance(model_name) -> None:
    model = COMPLETENESS_NETS[model_name]()
    x, x0 = _nets.inputs(3), _nets.inputs(3, seed=7, scale=0.3)
    gap = scores(model, x, TARGETS) - scores(model, x0, TARGETS)
    r = cnnlens.explain(model, x, "integrated_gradients", baseline=x0, target=TARGETS, tolerance=0.01, steps=4)
    delta = r.attributions.flatten(1).sum(1) - gap  # computed here, not taken from the method
    torch.testing.assert_close(r.delta, delta, rtol=0, atol=1e-5)
    assert (delta.abs() <= 0.01 * gap.abs() + 1e-6).all(), (delta, gap)
    per_image = r.info["passes_per_image"]
    assert len(per_image) == 3 and all(p >= 2 + 4 for p in per_image)
    assert sum(per_image) == r.passes  # f(x), f(x0) and the nodes of the Simpson panels, per image
    # and the result is the IG integral, not just any completeness-satisfying map
    fine = cnnlens.explain(model, x, "integrated_gradients", baseline=x0, target=TARGETS, steps=256)
    rel = (r.attributions - fine.attributions).flatten(1).norm(dim=1) / fine.attributions.flatten(1).norm(dim=1)
    assert (rel < 0.1).all(), rel


@pytest.mark.parametrize("model_name", ["tanh", "relu6", "residual_module"])
def test_adaptive_ig_converges_to_the_ig_integral(model_name) -> None:
    """A tight tolerance gives the integral that many-step Gauss-Legendre IG approximates (a slow reference, 4096
    nodes), not just any map that adds up; the same call gives the same result; no node is evaluated twice."""
    model = COMPLETENESS_NETS[model_name]()
    x, x0 = _nets.inputs(3, scale=2.5), _nets.inputs(3, seed=7, scale=0.3)
    run = lambda: cnnlens.explain(model, x, "integrated_gradients", baseline=x0, target=TARGETS,  # noqa: E731
                                  tolerance=1e-3, max_passes=4000)  # fmt: skip
    r = run()
    slow = cnnlens.explain(model, x, "integrated_gradients", baseline=x0, target=TARGETS, steps=4096).attributions
    rel = (r.attributions - slow).flatten(1).norm(dim=1) / slow.flatten(1).norm(dim=1)
    assert (rel < 1e-2).all(), rel
    torch.testing.assert_close(run().attributions, r.attributions, rtol=0, atol=0)
    # Simpson panels share their end nodes: 2 * panels + 1 nodes, plus f(x) and f(x0)
    for used, panels in zip(r.info["passes_per_image"], r.info["intervals_per_image"], strict=True):
        assert used == 2 + 2 * panels + 1


def test_adaptive_ig_warns_when_the_budget_runs_out(net, x, x0) -> None:
    with pytest.warns(CnnlensWarning, match="did not reach tolerance"):
        r = cnnlens.explain(net, x, "integrated_gradients", baseline=x0, target=TARGETS, tolerance=1e-9, max_passes=12)
    # the first round (steps=50 by default) is capped too: 9 path nodes (4 panels; a refinement adds 2) + f(x), f(x0)
    assert r.info["passes_per_image"] == [11, 11, 11]
    assert r.passes == 33
    with pytest.raises(cnnlens.CnnlensError, match="max_passes"):
        cnnlens.explain(net, x, "integrated_gradients", baseline=x0, tolerance=0.01, max_passes=3)


# =========================================================================================================
# 4. Guided backprop / deconvnet on non-gate activations
# =========================================================================================================

NON_GATES = ["leaky_relu", "silu", "gelu", "hardswish", "sigmoid", "tanh", "elu", "softplus"]


@pytest.mark.parametrize("act", NON_GATES)
@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_guided_and_deconvnet_refuse_smooth_activations(method, act, x) -> None:
    model = _nets.act_net(act)
    with pytest.raises(UnsupportedOperationError, match=act):
        cnnlens.explain(model, x, method)
    r = cnnlens.explain(model, x, method, generalize=True)
    assert r.attributions.shape == x.shape and torch.isfinite(r.attributions).all()
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("v", [0.8, -0.8])
def test_generalized_rules_on_one_silu_unit_by_hand(v) -> None:
    """generalize=True: guided passes relu(gradient) times the local derivative; deconvnet relu(gradient)."""
    w, b = torch.tensor([0.5, -1.0, 0.75, 0.25, -0.5, 1.0]), 0.1
    model = _nets.Functional(lambda t: v * F.silu(t.flatten(1) @ w[:, None] + b))
    x = _unit_inputs(w, b, [-2.0, 0.5, 3.0], seed=2)
    zd = (x.flatten(1) @ w + b).requires_grad_(True)
    (d,) = torch.autograd.grad(F.silu(zd).sum(), zd)
    wv = w.view(1, 1, 2, 3)
    guided = cnnlens.explain(model, x, "guided_backprop", target=1, generalize=True).attributions
    deconv = cnnlens.explain(model, x, "deconvnet", target=1, generalize=True).attributions
    assert_close(guided, max(v, 0.0) * d.view(-1, 1, 1, 1) * wv)
    assert_close(deconv, max(v, 0.0) * wv.expand_as(x))


def test_guided_backprop_handles_relu6() -> None:
    model = _nets.act_net("relu6")
    x = _nets.inputs(3, scale=2.5)
    ours = cnnlens.explain(model, x, "guided_backprop", target=TARGETS).attributions
    assert (ours - plain_grad(model, x, TARGETS)).abs().max() > 0.05 * ours.abs().max()


class _ClampAtMean(torch.nn.Module):
    """A ReLU-like gate whose threshold is computed from the input: ``clamp(x, min=mean(x) / 2)``, then linear."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(5, 3 * 8 * 8, generator=torch.Generator().manual_seed(4)))

    def forward(self, x: T) -> T:
        t = 0.5 * x.mean(dim=(1, 2, 3), keepdim=True)
        return x.clamp(min=t).flatten(1) @ self.w.T


def test_guided_backprop_treats_a_gate_bound_on_the_gradient_path_as_a_constant(x) -> None:
    """The rule gates the gradient of the activation's input; the bound is part of the gate, so no gradient
    flows through it (plain autograd would add d mean / d x terms)."""
    model = _ClampAtMean()
    ours = cnnlens.explain(model, x, "guided_backprop", target=TARGETS).attributions
    gate = x >= 0.5 * x.mean(dim=(1, 2, 3), keepdim=True)
    expected = model.w.detach()[TARGETS].clamp(min=0).view_as(x) * gate
    assert_close(ours, expected)
    assert (ours - plain_grad(model, x, TARGETS)).abs().max() > 1e-3


# =========================================================================================================
# 5. SmoothGrad, SmoothGrad², VarGrad
# =========================================================================================================


@pytest.mark.parametrize(
    "method", ["saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "deeplift", "deeplift_shap"]
)
def test_smoothgrad_with_zero_noise_is_the_plain_method(net, x, x0, dist, method) -> None:
    opts = _options(method, x0, dist)
    plain = cnnlens.explain(net, x, method, target=TARGETS, **opts)
    smooth = cnnlens.explain(
        net, x, method, target=TARGETS, smooth="smoothgrad", smooth_std=0.0, smooth_samples=3, **opts
    )
    assert_close(smooth.attributions, plain.attributions)
    assert smooth.delta is None


def _noise(x: T, n: int, std: float, seed: int) -> T:
    """The smoothing noise: first draw of the run's generator, std times each image's value range."""
    g = torch.Generator().manual_seed(seed)
    sigma = std * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    return torch.randn(x.shape[0] * n, *x.shape[1:], generator=g) * sigma.repeat_interleave(n).view(-1, 1, 1, 1)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])
def test_smoothgrad_sq_and_vargrad_against_an_independent_loop(x, method) -> None:
    net = _nets.act_net("tanh")  # its predictions change under this noise
    n, std, seed = 6, 0.3, 5
    noisy = x.repeat_interleave(n, 0) + _noise(x, n, std, seed)
    with torch.no_grad():
        clean_targets = net(x).argmax(1)
    # the noise is strong enough to change some predictions: targets must stay those of the clean images
    with torch.no_grad():
        assert (net(noisy).argmax(1) != clean_targets.repeat_interleave(n)).any()
    per = []
    for r in range(noisy.shape[0]):
        gr = plain_grad(net, noisy[r : r + 1], clean_targets[r // n : r // n + 1])[0]
        per.append(gr if method == "saliency" else noisy[r] * gr)
    per = torch.stack(per).view(x.shape[0], n, *x.shape[1:])
    opts = {"abs": False} if method == "saliency" else {}
    for kind, expected in [
        ("smoothgrad", per.mean(1)),
        ("smoothgrad_sq", (per**2).mean(1)),
        ("vargrad", ((per - per.mean(1, keepdim=True)) ** 2).mean(1)),
    ]:
        r = cnnlens.explain(net, x, method, smooth=kind, smooth_samples=n, smooth_std=std, seed=seed, **opts)
        assert_close(r.attributions, expected)
        torch.testing.assert_close(r.target, clean_targets)
        assert r.passes == 3 + 3 * n


def test_smoothgrad_over_deeplift_uses_the_same_noise_and_baselines(net, x, x0) -> None:
    n, std, seed = 4, 0.2, 3
    noisy = x.repeat_interleave(n, 0) + _noise(x, n, std, seed)
    runs = [
        cnnlens.explain(
            net, noisy[r : r + 1], "deeplift", baseline=x0[r // n : r // n + 1], target=TARGETS[r // n]
        ).attributions[0]
        for r in range(noisy.shape[0])
    ]
    expected = torch.stack(runs).view(3, n, *x.shape[1:]).mean(1)
    r = cnnlens.explain(
        net,
        x,
        "deeplift",
        baseline=x0,
        target=TARGETS,
        smooth="smoothgrad",
        smooth_samples=n,
        smooth_std=std,
        seed=seed,
    )
    assert_close(r.attributions, expected)


@pytest.mark.parametrize("method", ["saliency", "gradient_shap", "integrated_gradients"])
def test_seed_determinism(net, x, x0, dist, method) -> None:
    opts = {**_options(method, x0, dist), "smooth": "smoothgrad", "smooth_samples": 4}
    a = cnnlens.explain(net, x, method, target=TARGETS, seed=1, **opts).attributions
    b = cnnlens.explain(net, x, method, target=TARGETS, seed=1, **opts).attributions
    c = cnnlens.explain(net, x, method, target=TARGETS, seed=2, **opts).attributions
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3 * a.abs().max()


# =========================================================================================================
# 6. Batching and pass accounting
# =========================================================================================================

B, S, K, NS = 3, 8, 4, 6  # images, IG steps, baselines, GradientSHAP samples (stdev > 0)
EXACT_PASSES = {
    "saliency": B,
    "input_x_gradient": B,
    "guided_backprop": B,
    "deconvnet": B,
    "integrated_gradients": B + B + B * S,  # logits, baseline scores, path points
    "gradient_shap": B + B * NS,  # logits, sample points (no delta with noise: no baseline scores)
    "deeplift": 2 * B,  # a reference pass and an input pass per pair (the baselines are scored in the first)
    "deeplift_shap": B + 2 * B * K,  # logits, the two passes per (image, baseline) pair
}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_batch_size_does_not_change_results_and_passes_are_exact(net, x, x0, dist, method) -> None:
    opts = _options(method, x0, dist)
    runs = {bs: cnnlens.explain(net, x, method, batch_size=bs, **opts) for bs in (None, 1, 3, 5)}
    ref = runs[None]
    for r in runs.values():
        assert_close(r.attributions, ref.attributions, rtol=1e-6)
        if ref.delta is not None:
            torch.testing.assert_close(r.delta, ref.delta, rtol=0, atol=1e-5)
        assert r.passes == EXACT_PASSES[method]
        torch.testing.assert_close(r.target, ref.probabilities.argmax(1))
    with torch.no_grad():
        torch.testing.assert_close(ref.probabilities, torch.softmax(net(x), 1))


def test_gradient_shap_passes_without_noise_and_one_baseline(net, x, x0) -> None:
    r = cnnlens.explain(net, x, "gradient_shap", baseline=x0[:, None], samples=5, batch_size=2)
    assert r.passes == B + B * 5 + B  # logits, samples, one baseline score per image
    assert r.delta is not None


def test_smoothing_passes(net, x, x0) -> None:
    r = cnnlens.explain(net, x, "integrated_gradients", baseline=x0, steps=4, smooth="vargrad", smooth_samples=3)
    n = 3
    assert r.passes == B + (B * n) + (B * n) + B * n * 4  # clean logits; per noisy copy: logits, baseline, path


class _Gated(torch.nn.Module):
    """A squeeze-excitation-like product of two activations: outside DeepLIFT's rescale rule."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        h = self.conv(x)
        h = h * torch.sigmoid(h.mean((2, 3), keepdim=True))
        return self.fc(h.mean((2, 3)))


@pytest.mark.parametrize("method", ["deeplift", "deeplift_shap"])
def test_deeplift_warns_when_completeness_fails(method: str) -> None:
    x = _nets.inputs(2)
    with pytest.warns(CnnlensWarning, match="rescale rule does not cover"):
        e = cnnlens.explain(_Gated(), x, method, baseline=torch.zeros_like(x) + 0.5)
    gap = e.attributions.flatten(1).sum(1) - e.delta
    assert (e.delta.abs() > 1e-3 * gap.abs()).any()  # the warning reflects a real completeness error
