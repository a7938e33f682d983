"""Gradient methods on the real EfficientNet-Lite0 (ReLU6 everywhere, one ReLU6 module reused per block).

Independent references are built here with plain PyTorch: guided backprop by module backward hooks and,
separately, by an autograd function swapped in for ``F.hardtanh``; completeness gaps from direct forward
passes. One image, modest settings: the whole file runs in well under a minute and a half on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:captum"),
    pytest.mark.usefixtures("one_thread"),
]
T = torch.Tensor


def _score(model: nn.Module, x: T, target: int) -> float:
    with torch.no_grad():
        return float(model(x)[0, target])


def _grad(model: nn.Module, x: T, target: int) -> T:
    xi = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xi)[0, target], xi)
    return g


def _relu6_calls(model: nn.Module) -> int:
    """ReLU6 applications per forward pass, from the architecture: stem, head, and per MBConv block the
    depthwise activation plus the expansion activation when the block expands (same ``_swish`` module)."""
    return 2 + sum(2 if block._block_args.expand_ratio != 1 else 1 for block in model._blocks)


@pytest.fixture(scope="module")
def plain(lite0, x, target) -> T:
    return _grad(lite0.module, x, target)


@pytest.fixture(scope="module")
def guided(lite0, x, target) -> cnnlens.Explanation:
    return cnnlens.explain(lite0, x, "guided_backprop", target=target)


def test_lite0_reuses_its_relu6_modules(lite0) -> None:
    """The trap for module-hook implementations: fewer ReLU6 modules than ReLU6 calls."""
    model, calls = lite0.module, []
    modules = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    handles = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in modules]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == _relu6_calls(model) > len({id(m) for m in calls})
    assert not any(isinstance(m, (nn.ReLU, nn.SiLU, nn.Sigmoid)) for m in model.modules())


def test_guided_backprop_equals_backward_hook_reference(lite0, x, target, guided, plain) -> None:
    """Reference 1: a full backward hook on every ReLU6 module that keeps the positive part of grad_input
    (= 1[0 < z < 6] * grad_output, so the result is 1[0 < z < 6] * relu(grad_output)). Full backward hooks
    wrap each call separately, so a module used twice is handled per call; the test checks that every
    call's backward hook fired."""
    model, fired = lite0.module, {"forward": 0, "backward": 0}

    def on_forward(module, inputs, output):
        fired["forward"] += 1

    def on_backward(module, grad_input, grad_output):
        fired["backward"] += 1
        return (grad_input[0].clamp(min=0),)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.ReLU6):
            handles += [m.register_forward_hook(on_forward), m.register_full_backward_hook(on_backward)]
    try:
        reference = _grad(model, x, target)
    finally:
        for h in handles:
            h.remove()
    assert fired["forward"] == fired["backward"] == _relu6_calls(model)
    scale = reference.abs().max().item()
    torch.testing.assert_close(guided.attributions, reference, rtol=1e-5, atol=1e-5 * scale)
    # ReLU6 is handled: guided backprop is not the plain gradient here
    assert (guided.attributions - plain).abs().max() > 0.1 * scale


class _GuidedHardtanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * ((x > ctx.lo) & (x < ctx.hi)), None, None


def test_guided_backprop_equals_autograd_function_reference(lite0, x, target, guided, monkeypatch) -> None:
    """Reference 2: nn.ReLU6 calls F.hardtanh(x, 0, 6); replace it by a function with the guided backward."""
    calls = []

    def guided_hardtanh(t, min_val=-1.0, max_val=1.0, inplace=False):
        assert not inplace
        calls.append((min_val, max_val))
        return _GuidedHardtanh.apply(t, min_val, max_val)

    with monkeypatch.context() as mp:
        mp.setattr(F, "hardtanh", guided_hardtanh)
        reference = _grad(lite0.module, x, target)
    assert calls == [(0.0, 6.0)] * _relu6_calls(lite0.module)
    scale = reference.abs().max().item()
    torch.testing.assert_close(guided.attributions, reference, rtol=1e-5, atol=1e-5 * scale)


def test_captum_guided_backprop_is_the_plain_gradient_on_lite0(lite0, x, target, plain) -> None:
    """Why cnnlens has its own rules: Captum hooks nn.ReLU modules only, and Lite0 has none (ReLU6)."""
    captum_attr = pytest.importorskip("captum.attr")
    theirs = captum_attr.GuidedBackprop(lite0.module).attribute(x.clone(), target=target)
    torch.testing.assert_close(theirs, plain, rtol=1e-6, atol=1e-6 * plain.abs().max().item())


def test_deeplift_and_deeplift_shap_completeness(lite0, x, target, plain) -> None:
    model = lite0.module
    fx = _score(model, x, target)
    r = cnnlens.explain(lite0, x, "deeplift", baseline="zero", target=target)
    gap = fx - _score(model, torch.zeros_like(x), target)
    delta = r.attributions.sum().item() - gap  # completeness error computed here, not taken from the method
    assert abs(delta) <= 1e-3 * abs(gap), (delta, gap)
    assert abs(r.delta.item() - delta) <= 1e-3 * abs(gap)
    assert r.passes == 2  # a pass of the baseline (which scores it too), a pass of the image
    # the rescale rule is doing something: DeepLIFT is not (x - 0) * gradient here
    assert (r.attributions - x * plain).abs().max() > 0.1 * r.attributions.abs().max()

    refs = torch.cat([torch.zeros_like(x), torch.full_like(x, -0.5)])  # gray and a dark gray image
    r = cnnlens.explain(lite0, x, "deeplift_shap", baseline=refs, target=target)
    gap = fx - sum(_score(model, ref[None], target) for ref in refs) / len(refs)
    delta = r.attributions.sum().item() - gap
    assert abs(delta) <= 1e-3 * abs(gap), (delta, gap)
    assert abs(r.delta.item() - delta) <= 1e-3 * abs(gap)


def test_adaptive_integrated_gradients_reaches_one_percent(lite0, x, target) -> None:
    model = lite0.module
    r = cnnlens.explain(lite0, x, "integrated_gradients", baseline="zero", target=target, tolerance=0.01, steps=16)
    gap = _score(model, x, target) - _score(model, torch.zeros_like(x), target)
    delta = r.attributions.sum().item() - gap
    assert abs(delta) <= 0.01 * abs(gap), (delta, gap)
    assert abs(r.delta.item() - delta) <= 1e-3 * abs(gap)
    (passes,) = r.info["passes_per_image"]
    assert passes == r.passes and 2 + 16 <= passes <= 2048


def test_integrated_gradients_equals_captum_on_lite0(lite0, x, target) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    x0 = torch.zeros_like(x)
    attr, delta = captum_attr.IntegratedGradients(lite0.module).attribute(
        x.clone(), baselines=x0, target=target, n_steps=8, return_convergence_delta=True
    )
    ours = cnnlens.explain(lite0, x, "integrated_gradients", baseline=x0, target=target, steps=8)
    torch.testing.assert_close(ours.attributions, attr, rtol=1e-5, atol=1e-5 * attr.abs().max().item())
    torch.testing.assert_close(ours.delta, delta, rtol=1e-4, atol=1e-4)


def test_captum_deeplift_breaks_completeness_on_lite0(lite0, x, target) -> None:
    """Why cnnlens has its own rules: Captum's DeepLift has no rule for ReLU6, so on Lite0 its attributions
    do not even sum to f(x) - f(baseline) to one significant digit (ours: 1e-3, see above)."""
    captum_attr = pytest.importorskip("captum.attr")
    x0 = torch.zeros_like(x)
    _, delta = captum_attr.DeepLift(lite0.module).attribute(
        x.clone(), baselines=x0, target=target, return_convergence_delta=True
    )
    gap = _score(lite0.module, x, target) - _score(lite0.module, x0, target)
    assert abs(delta.item()) > 0.1 * abs(gap)
