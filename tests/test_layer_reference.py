"""Reference tests for layer and neuron attribution, against truth that does not come from cnnlens.

* Captum 0.9 on the residual ReLU CNN with distinct, non-inplace ``nn.ReLU`` modules (where Captum is right), at a
  layer that a residual connection skips (``b2c1``) and at one that every path goes through (``head``).
* Axioms: completeness of layer IG, layer conductance and layer DeepLIFT; the sum over pixels of neuron conductance
  is the unit's layer conductance; neuron IG at the logits is IG; a slow, obviously-right conductance (the exact
  derivative of the layer's output along the path by a Jacobian-vector product, at many points) as reference.
* Batched equals per-image; neuron specs (channel, unit, callable) and their errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import _nets
import cnnlens
from cnnlens import CnnlensError
from cnnlens.engine import Context

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:captum"),
    pytest.mark.usefixtures("one_thread"),
]
T = torch.Tensor
TARGETS = torch.tensor([1, 3, 4])
SKIPPED = "b2c1"  # inside the second residual block: the block's input skips it
THROUGH = "head"  # after the residual blocks: every path goes through it
UNIT = (2, 1, 3)

try:
    import captum.attr as captum_attr
except ImportError:
    captum_attr = None
needs_captum = pytest.mark.skipif(captum_attr is None, reason="captum (dev extra) is not installed")


def assert_close(ours: T, theirs: T, rtol: float = 1e-5) -> None:
    """Equal within ``rtol`` relative to each value and to the largest magnitude of the reference."""
    theirs = theirs.detach().to(ours.dtype)
    scale = max(theirs.abs().max().item(), 1e-12)
    torch.testing.assert_close(ours.detach(), theirs, rtol=rtol, atol=rtol * scale)


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
    return _nets.inputs(4, seed=11, scale=0.5)


def layer(net: nn.Module, name: str) -> nn.Module:
    return net.get_submodule(name)


def scores(model: nn.Module, x: T, target: T) -> T:
    with torch.no_grad():
        return model(x).gather(1, target.view(-1, 1))[:, 0]


# =========================================================================================================
# 1. Captum 0.9 equality
# =========================================================================================================


@needs_captum
@pytest.mark.parametrize("where", [SKIPPED, THROUGH])
def test_layer_activation_gradient_and_gradient_x_activation_equal_captum(net, x, where) -> None:
    lay = layer(net, where)
    acts = captum_attr.LayerActivation(net, lay).attribute(x.clone())
    grads = captum_attr.LayerGradientXActivation(net, lay, multiply_by_inputs=False).attribute(
        x.clone(), target=TARGETS.tolist()
    )
    gxa = captum_attr.LayerGradientXActivation(net, lay).attribute(x.clone(), target=TARGETS.tolist())
    assert_close(cnnlens.explain(net, x, "layer_activation", layer=where).attributions, acts)
    assert_close(cnnlens.explain(net, x, "layer_gradient", target=TARGETS, layer=where).attributions, grads)
    ours = cnnlens.explain(net, x, "layer_gradient_x_activation", target=TARGETS, layer=where)
    assert_close(ours.attributions, gxa)
    assert ours.layer == where and ours.attributions.shape == acts.shape
    assert_close(ours.info["activations"], acts)


@needs_captum
@pytest.mark.parametrize("where", [SKIPPED, THROUGH])
@pytest.mark.parametrize(("quadrature", "steps"), [("gausslegendre", 7), ("riemann_left", 12)])
def test_layer_integrated_gradients_equals_captum(net, x, x0, where, quadrature, steps) -> None:
    attr, delta = captum_attr.LayerIntegratedGradients(net, layer(net, where)).attribute(
        x.clone(), baselines=x0, target=TARGETS.tolist(), n_steps=steps, method=quadrature,
        return_convergence_delta=True,
    )  # fmt: skip
    ours = cnnlens.explain(
        net, x, "layer_integrated_gradients", baseline=x0, target=TARGETS, layer=where, steps=steps,
        quadrature=quadrature,
    )  # fmt: skip
    assert_close(ours.attributions, attr)
    if where == THROUGH:  # Captum's delta compares with f(x) - f(x0): right when nothing skips the layer
        torch.testing.assert_close(ours.delta, delta.float(), rtol=1e-4, atol=1e-5 * attr.abs().sum().item())


@needs_captum
@pytest.mark.parametrize("where", [SKIPPED, THROUGH])
def test_internal_influence_equals_captum(net, x, x0, where) -> None:
    theirs = captum_attr.InternalInfluence(net, layer(net, where)).attribute(
        x.clone(), baselines=x0, target=TARGETS.tolist(), n_steps=9
    )
    ours = cnnlens.explain(net, x, "internal_influence", baseline=x0, target=TARGETS, layer=where, steps=9)
    assert_close(ours.attributions, theirs)


@needs_captum
@pytest.mark.parametrize("where", [SKIPPED, THROUGH])
def test_layer_deeplift_and_deeplift_shap_equal_captum(net, x, x0, dist, where) -> None:
    lay = layer(net, where)
    attr = captum_attr.LayerDeepLift(net, lay).attribute(x.clone(), baselines=x0, target=TARGETS.tolist())
    shap = captum_attr.LayerDeepLiftShap(net, lay).attribute(x.clone(), baselines=dist, target=TARGETS.tolist())
    with pytest.warns(cnnlens.CnnlensWarning, match="skip layer") if where == SKIPPED else _no_warning():
        ours = cnnlens.explain(net, x, "layer_deeplift", baseline=x0, target=TARGETS, layer=where)
    assert_close(ours.attributions, attr)
    with pytest.warns(cnnlens.CnnlensWarning) if where == SKIPPED else _no_warning():
        ours_shap = cnnlens.explain(net, x, "layer_deeplift_shap", baseline=dist, target=TARGETS, layer=where)
    assert_close(ours_shap.attributions, shap)
    gap = scores(net, x, TARGETS) - scores(net, x0, TARGETS)
    if where == THROUGH:  # every path goes through the layer: complete
        torch.testing.assert_close(ours.attributions.flatten(1).sum(1), gap, rtol=1e-5, atol=1e-5)
    else:  # the skipped part is missing, and the delta says how much
        assert (ours.delta.abs() > 1e-2 * gap.abs()).all()


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", cnnlens.CnnlensWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _replay_gradient_shap_draws(monkeypatch, x: T, k: int, s: int, stdev: float, fn) -> tuple:
    """Run Captum's GradientShap-style ``fn`` with seeded NumPy/torch, then replay its draws through Context."""
    b = x.shape[0]
    np.random.seed(123)
    torch.manual_seed(456)
    theirs = fn()
    np.random.seed(123)
    pick = torch.as_tensor(np.random.choice(k, s * b))
    alpha = torch.tensor(np.random.uniform(0.0, 1.0, b * s), dtype=x.dtype)
    torch.manual_seed(456)
    noise = torch.normal(0, torch.tensor(stdev).repeat((b * s, *x.shape[1:])))
    monkeypatch.setattr(Context, "randn", lambda self, *shape: noise / stdev if stdev > 0 else torch.zeros(shape))
    monkeypatch.setattr(Context, "randint", lambda self, high, *shape: pick.clone())
    monkeypatch.setattr(Context, "rand", lambda self, *shape: alpha.clone())
    return theirs


@needs_captum
@pytest.mark.parametrize("stdev", [0.0, 0.2])
def test_layer_and_neuron_gradient_shap_equal_captum_with_the_same_draws(net, x, dist, stdev, monkeypatch) -> None:
    s, lay = 5, layer(net, SKIPPED)
    theirs = _replay_gradient_shap_draws(
        monkeypatch, x, dist.shape[0], s, stdev,
        lambda: captum_attr.LayerGradientShap(net, lay).attribute(
            x.clone(), baselines=dist, n_samples=s, stdevs=stdev, target=TARGETS.tolist()
        ),
    )  # fmt: skip
    ours = cnnlens.explain(
        net, x, "layer_gradient_shap", baseline=dist, target=TARGETS, layer=SKIPPED, samples=s, stdev=stdev
    )
    assert_close(ours.attributions, theirs)
    monkeypatch.undo()
    theirs = _replay_gradient_shap_draws(
        monkeypatch, x, dist.shape[0], s, stdev,
        lambda: captum_attr.NeuronGradientShap(net, lay).attribute(
            x.clone(), neuron_selector=UNIT, baselines=dist, n_samples=s, stdevs=stdev
        ),
    )  # fmt: skip
    ours = cnnlens.explain(net, x, "neuron_gradient_shap", baseline=dist, layer=SKIPPED, neuron=UNIT, samples=s,
                           stdev=stdev)  # fmt: skip
    assert_close(ours.attributions, theirs)


@needs_captum
@pytest.mark.parametrize("where", [SKIPPED, THROUGH])
def test_layer_feature_ablation_equals_captum(net, x, x0, where) -> None:
    lay = layer(net, where)
    c = lay.out_channels
    channels = torch.arange(c).view(1, c, 1, 1)
    theirs = captum_attr.LayerFeatureAblation(net, lay).attribute(
        x.clone(), target=TARGETS.tolist(), layer_mask=channels
    )
    ours = cnnlens.explain(net, x, "layer_feature_ablation", target=TARGETS, layer=where)
    assert_close(ours.attributions, theirs)
    assert ours.info["group_values"].shape == (3, c)
    # a mask over units (left and right halves of every channel), ablated to the baseline image's activation
    h, w = ours.attributions.shape[-2:]
    halves = (torch.arange(w) >= w // 2).long().view(1, 1, w).expand(1, h, w)
    fill = captum_attr.LayerActivation(net, lay).attribute(x0.clone())
    theirs = captum_attr.LayerFeatureAblation(net, lay).attribute(
        x.clone(), target=TARGETS.tolist(), layer_mask=halves[None], layer_baselines=fill
    )
    ours = cnnlens.explain(net, x, "layer_feature_ablation", target=TARGETS, layer=where, mask=halves, baseline=x0)
    assert_close(ours.attributions, theirs)


@needs_captum
@pytest.mark.parametrize("relu", [True, False])
def test_layer_grad_cam_equals_captum(net, x, relu) -> None:
    theirs = captum_attr.LayerGradCam(net, layer(net, SKIPPED)).attribute(
        x.clone(), target=TARGETS.tolist(), relu_attributions=relu
    )
    ours = cnnlens.explain(net, x, "layer_grad_cam", target=TARGETS, layer=SKIPPED, relu=relu)
    assert_close(ours.attributions, theirs)
    assert ours.attributions.shape == (3, 1, 8, 8)


def _channel_mean(c: int):
    return lambda out: out[:, c].mean((1, 2))


@needs_captum
@pytest.mark.parametrize("spec", [UNIT, 3])
def test_neuron_gradient_ig_deeplift_guided_deconvnet_equal_captum(net, x, x0, dist, spec) -> None:
    lay = layer(net, SKIPPED)
    selector = spec if isinstance(spec, tuple) else _channel_mean(spec)  # ours: a channel is its spatial mean
    cases = [
        ("neuron_gradient", captum_attr.NeuronGradient(net, lay).attribute(x.clone(), selector), {}),
        (
            "neuron_integrated_gradients",
            captum_attr.NeuronIntegratedGradients(net, lay).attribute(x.clone(), selector, baselines=x0, n_steps=11),
            {"baseline": x0, "steps": 11},
        ),
        ("neuron_deeplift", captum_attr.NeuronDeepLift(net, lay).attribute(x.clone(), selector, x0), {"baseline": x0}),
        (
            "neuron_deeplift_shap",
            captum_attr.NeuronDeepLiftShap(net, lay).attribute(x.clone(), selector, dist),
            {"baseline": dist},
        ),
        ("neuron_guided_backprop", captum_attr.NeuronGuidedBackprop(net, lay).attribute(x.clone(), selector), {}),
        ("neuron_deconvnet", captum_attr.NeuronDeconvolution(net, lay).attribute(x.clone(), selector), {}),
    ]
    for name, theirs, opts in cases:
        ours = cnnlens.explain(net, x, name, layer=SKIPPED, neuron=spec, **opts)
        assert_close(ours.attributions, theirs)
        assert ours.target is None and ours.neuron == spec and ours.layer == SKIPPED
    # the rules matter here: guided backprop of the neuron is not its plain gradient
    plain = cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=spec).attributions
    guided = cnnlens.explain(net, x, "neuron_guided_backprop", layer=SKIPPED, neuron=spec).attributions
    assert (plain - guided).abs().max() > 0.1 * plain.abs().max()


@needs_captum
def test_neuron_feature_ablation_and_conductance_equal_captum(net, x, x0) -> None:
    lay = layer(net, SKIPPED)
    mask = (torch.arange(8)[:, None] // 4 * 2 + torch.arange(8)[None] // 4).expand(1, 1, 8, 8)
    theirs = captum_attr.NeuronFeatureAblation(net, lay).attribute(x.clone(), UNIT, baselines=x0, feature_mask=mask)
    ours = cnnlens.explain(  # (B, 1, C, H, W): one baseline per image (a 4-d tensor is a shared distribution)
        net, x, "neuron_feature_ablation", baseline=x0[:, None], layer=SKIPPED, neuron=UNIT, mask=mask[0, 0]
    )
    assert_close(ours.attributions, theirs)
    theirs = captum_attr.NeuronConductance(net, lay).attribute(
        x.clone(), UNIT, baselines=x0, target=TARGETS.tolist(), n_steps=9, method="riemann_trapezoid"
    )
    ours = cnnlens.explain(
        net, x, "neuron_conductance", baseline=x0, target=TARGETS, layer=SKIPPED, neuron=UNIT, steps=9,
        quadrature="riemann_trapezoid",
    )  # fmt: skip
    assert_close(ours.attributions, theirs)
    assert torch.equal(ours.target, TARGETS) and ours.neuron == UNIT


# =========================================================================================================
# 2. Axioms and slow references
# =========================================================================================================


def reference_conductance(model: nn.Module, name: str, x: T, x0: T, target: T, nodes: int = 64) -> T:
    """sum_k w_k  d f / d y (x(a_k)) * d y / d a (x(a_k)): Gauss-Legendre on [0, 1] with the exact derivative of
    the layer's output ``y`` along the path (a Jacobian-vector product, ``torch.func.jvp``); one image at a time,
    its nodes in one batch; ``d f / d y`` with the layer's output replaced by a leaf (a plain forward hook)."""
    alphas, weights = np.polynomial.legendre.leggauss(nodes)
    a = torch.tensor(0.5 * (alphas + 1), dtype=x.dtype).view(-1, 1, 1, 1)
    w = torch.tensor(0.5 * weights, dtype=x.dtype).view(-1, *[1] * (x.dim() - 1))
    lay = model.get_submodule(name)

    def layer_output(inputs: T) -> T:
        seen = []
        h = lay.register_forward_hook(lambda _m, _a, o: seen.append(o))
        try:
            model(inputs)
        finally:
            h.remove()
        return seen[0]

    out = []
    for i in range(x.shape[0]):
        d = (x[i] - x0[i]).expand(nodes, *x.shape[1:])
        points = x0[i] + a * d
        y, tangent = torch.func.jvp(layer_output, (points,), (d,))
        leaf = y.detach().requires_grad_(True)
        h = lay.register_forward_hook(lambda _m, _a, _o, leaf=leaf: leaf)
        try:
            (g,) = torch.autograd.grad(model(points)[:, target[i]].sum(), leaf)
        finally:
            h.remove()
        out.append((w * g * tangent.detach()).sum(0))
    return torch.stack(out)


@pytest.fixture(scope="module")
def smooth_net() -> nn.Module:
    """conv-SiLU, conv-SiLU, conv-softplus, avg pooling, linear: smooth, so Gauss-Legendre converges fast."""
    net = nn.Sequential()
    net.add_module("c1", nn.Conv2d(3, 5, 3, padding=1))
    net.add_module("r1", nn.SiLU())
    net.add_module("c2", nn.Conv2d(5, 4, 3, padding=1))
    net.add_module("r2", nn.SiLU())
    net.add_module("c3", nn.Conv2d(4, 4, 3, padding=1))
    net.add_module("r3", nn.Softplus())
    net.add_module("pool", nn.AdaptiveAvgPool2d(2))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(16, 3))
    return _nets.init_(net, seed=5)


@pytest.fixture(scope="module")
def plain_relu_net() -> nn.Module:
    """conv-ReLU, conv-ReLU (no skip), avg pooling, linear: every path goes through ``c2``."""
    torch.manual_seed(3)
    net = nn.Sequential()
    net.add_module("c1", nn.Conv2d(3, 5, 3, padding=1))
    net.add_module("r1", nn.ReLU())
    net.add_module("c2", nn.Conv2d(5, 4, 3, padding=1))
    net.add_module("r2", nn.ReLU())
    net.add_module("c3", nn.Conv2d(4, 4, 3, padding=1))
    net.add_module("r3", nn.Softplus())
    net.add_module("pool", nn.AdaptiveAvgPool2d(2))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(16, 3))
    return _nets.init_(net, seed=5)


SMOOTH_TARGETS = torch.tensor([0, 2, 1])


@pytest.fixture(scope="module")
def smooth_reference(smooth_net, x, x0) -> T:
    """The exact conductance of the smooth net's ``c2`` (64 Gauss-Legendre nodes per image)."""
    return reference_conductance(smooth_net, "c2", x, x0, SMOOTH_TARGETS)


def test_layer_conductance_converges_to_the_exact_path_integral(smooth_net, smooth_reference, x, x0) -> None:
    """Per unit, not only in sum: our conductance (the head at ``points`` points, the tail integrated along the
    segments between them) against the slow forward-mode reference; the error falls as 1 / points**2 while the
    sum is complete to the tolerance whatever ``points`` is."""
    t, ref = SMOOTH_TARGETS, smooth_reference
    gap = scores(smooth_net, x, t) - scores(smooth_net, x0, t)
    errors = []
    for points in (6, 24):
        ours = cnnlens.explain(smooth_net, x, "layer_conductance", baseline=x0, target=t, layer="c2", points=points,
                               tolerance=1e-4, max_passes=5000)  # fmt: skip
        errors.append(float((ours.attributions - ref).abs().sum() / ref.abs().sum()))
        assert (ours.delta.abs() <= 1e-4 * gap.abs() + 1e-7).all()
    assert errors[1] < 5e-4 and errors[1] < errors[0] / 8


def test_neuron_conductance_sums_to_the_units_layer_conductance(smooth_net, smooth_reference, x, x0) -> None:
    """For every unit j: sum over pixels of neuron conductance(j) = layer conductance(j) (both against the same
    exact reference); a channel's neuron conductance is the flow through all its units."""
    t, ref = SMOOTH_TARGETS, smooth_reference
    layer_cond = cnnlens.explain(smooth_net, x, "layer_conductance", baseline=x0, target=t, layer="c2", points=48,
                                 tolerance=1e-5, max_passes=5000).attributions  # fmt: skip
    scale = ref.abs().max()
    for unit in [(0, 3, 4), (2, 0, 7), (3, 5, 5)]:
        nc = cnnlens.explain(smooth_net, x, "neuron_conductance", baseline=x0, target=t, layer="c2", neuron=unit,
                             steps=32).attributions.flatten(1).sum(1)  # fmt: skip
        torch.testing.assert_close(nc, ref[(slice(None), *unit)], rtol=0, atol=1e-5 * scale)
        torch.testing.assert_close(nc, layer_cond[(slice(None), *unit)], rtol=0, atol=1e-3 * scale)
    for c in range(4):  # every unit, channel by channel: the flow through all of a channel's units
        channel = cnnlens.explain(smooth_net, x, "neuron_conductance", baseline=x0, target=t, layer="c2", neuron=c,
                                  steps=32).attributions.flatten(1).sum(1)  # fmt: skip
        torch.testing.assert_close(channel, ref[:, c].flatten(1).sum(1), rtol=0, atol=1e-5 * ref.abs().sum(1).max())
        torch.testing.assert_close(channel, layer_cond[:, c].flatten(1).sum(1), rtol=0, atol=1e-3 * scale)


def test_layer_conductance_with_a_skip_leaves_out_the_skipped_flow(net, x, x0) -> None:
    """At a layer a residual connection skips, the units' sum misses the skip's share: delta is minus that share,
    and the tolerance still holds for the whole (units + skip): refining stops early, no warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", cnnlens.CnnlensWarning)
        e = cnnlens.explain(net, x, "layer_conductance", baseline=x0, target=TARGETS, layer=SKIPPED, tolerance=1e-3)
    ref = reference_conductance(net, SKIPPED, x, x0, TARGETS, nodes=512)  # ReLUs: converges slowly
    gap = scores(net, x, TARGETS) - scores(net, x0, TARGETS)
    torch.testing.assert_close(e.delta, ref.flatten(1).sum(1) - gap, rtol=0, atol=0.02 * gap.abs().max())
    assert float((e.attributions - ref).abs().sum() / ref.abs().sum()) < 0.05


@pytest.mark.parametrize("where", [SKIPPED, THROUGH])
def test_layer_integrated_gradients_completeness_and_adaptive_mode(net, x, x0, where) -> None:
    e = cnnlens.explain(net, x, "layer_integrated_gradients", baseline=x0, target=TARGETS, layer=where, steps=64)
    acts0 = cnnlens.explain(net, x0, "layer_activation", layer=where).attributions
    # the gap across the layer: the tail at the layer's baseline value, with what skips it from the image
    view_gap = e.attributions.flatten(1).sum(1) - e.delta
    if where == THROUGH:
        torch.testing.assert_close(view_gap, scores(net, x, TARGETS) - scores(net, x0, TARGETS), rtol=1e-5, atol=1e-5)
    assert e.delta.abs().max() < 0.02 * view_gap.abs().max()
    adaptive = cnnlens.explain(net, x, "layer_integrated_gradients", baseline=x0, target=TARGETS, layer=where,
                               tolerance=0.01, steps=4)  # fmt: skip
    assert (adaptive.delta.abs() <= 0.01 * view_gap.abs()).all()
    assert acts0.shape == e.attributions.shape


def test_neuron_ig_at_the_logits_is_integrated_gradients(net, x, x0) -> None:
    for c in (1, 4):
        ig = cnnlens.explain(net, x, "integrated_gradients", baseline=x0, target=c, steps=16)
        nig = cnnlens.explain(net, x, "neuron_integrated_gradients", baseline=x0, layer="fc", neuron=c, steps=16)
        assert_close(nig.attributions, ig.attributions)
        torch.testing.assert_close(nig.delta, ig.delta, rtol=0, atol=1e-5)


def test_layer_deeplift_family_is_complete_without_a_skip(plain_relu_net, x, x0, dist) -> None:
    """ReLU and softplus after the layer, no skip: DeepLIFT at the layer sums to f(x) - f(x0)."""
    t = torch.tensor([0, 2, 1])
    gap = scores(plain_relu_net, x, t) - scores(plain_relu_net, x0, t)
    e = cnnlens.explain(plain_relu_net, x, "layer_deeplift", baseline=x0, target=t, layer="c2")
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), gap, rtol=1e-5, atol=1e-5)
    e = cnnlens.explain(plain_relu_net, x, "layer_deeplift_shap", baseline=dist, target=t, layer="c2")
    assert e.delta.abs().max() < 1e-5
    e = cnnlens.explain(plain_relu_net, x, "layer_gradient_shap", baseline=dist, target=t, layer="c2", samples=400)
    dist_gap = scores(plain_relu_net, x, t) - torch.stack(
        [scores(plain_relu_net, d[None].expand_as(x), t) for d in dist]
    ).mean(0)
    assert (e.delta.abs() < 0.1 * dist_gap.abs()).all()


# =========================================================================================================
# 3. Batching, specs and errors
# =========================================================================================================

LAYER_CASES = {
    "layer_activation": {},
    "layer_gradient": {},
    "layer_gradient_x_activation": {},
    "layer_grad_cam": {},
    "layer_integrated_gradients": {"steps": 6},
    "layer_conductance": {"points": 5, "steps": 8},
    "internal_influence": {"steps": 6},
    "layer_deeplift": {},
    "layer_deeplift_shap": {"baseline": "dist"},
    "layer_gradient_shap": {"baseline": "dist", "samples": 4},
    "layer_feature_ablation": {},
    "layer_lrp": {},  # its values: tests/test_propagation.py (activation x gradient under LRP-0)
}
NEURON_CASES = {
    "neuron_gradient": {},
    "neuron_integrated_gradients": {"steps": 6},
    "neuron_conductance": {"steps": 6},
    "neuron_gradient_shap": {"baseline": "dist", "samples": 4},
    "neuron_deeplift": {},
    "neuron_deeplift_shap": {"baseline": "dist"},
    "neuron_guided_backprop": {},
    "neuron_deconvnet": {},
    "neuron_feature_ablation": {"baseline": "dist", "mask": "grid:4"},
}


def test_every_layer_and_neuron_method_is_tested_here() -> None:
    assert set(LAYER_CASES) == {m.name for m in cnnlens.methods("layer")}
    assert set(NEURON_CASES) == {m.name for m in cnnlens.methods("neuron")}


@pytest.mark.filterwarnings("ignore:DeepLIFT attributions miss")  # at a layer a residual connection skips
@pytest.mark.parametrize("name", [*LAYER_CASES, *NEURON_CASES])
def test_batched_equals_per_image(net, x, x0, dist, name) -> None:
    opts = dict(LAYER_CASES.get(name, NEURON_CASES.get(name)))
    opts["baseline"] = dist if opts.get("baseline") == "dist" else x0
    info = {m.name: m for m in cnnlens.methods()}[name]
    if info.needs_baseline is None and name != "layer_feature_ablation":
        opts.pop("baseline")
    if info.category == "neuron":
        opts["neuron"] = UNIT
    target = None if info.category == "neuron" and name != "neuron_conductance" else TARGETS
    runs = [
        cnnlens.explain(net, x, name, target=target, layer=SKIPPED, batch_size=bs, seed=3, **opts)
        for bs in (None, 2, 5)
    ]
    base = opts.pop("baseline", None)
    for i in range(3):
        b = None if base is None else base if base.shape[0] != 3 else base[i : i + 1]
        t = None if target is None else target[i : i + 1]
        one = cnnlens.explain(net, x[i : i + 1], name, target=t, layer=SKIPPED, baseline=b, **opts)
        if "samples" not in opts:  # sampling draws differ with the batch; the rest must agree per image
            assert_close(runs[0].attributions[i : i + 1], one.attributions, 1e-4)
    for r in runs[1:]:
        assert_close(r.attributions, runs[0].attributions, 1e-4)


def test_neuron_specs_and_their_errors(net, x) -> None:
    mean = cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=2).attributions
    fn = cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=_channel_mean(2)).attributions
    assert_close(mean, fn)
    with pytest.raises(CnnlensError, match="needs neuron="):
        cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED)
    with pytest.raises(CnnlensError, match="out of range"):
        cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=(9, 0, 0))
    with pytest.raises(CnnlensError, match="one index per axis"):
        cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=(1, 2))
    with pytest.raises(CnnlensError, match="remove target="):
        cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=1, target=2)
    with pytest.raises(CnnlensError, match="not a callable"):
        cnnlens.explain(net, x, "neuron_conductance", layer=SKIPPED, neuron=_channel_mean(1), baseline=0.0)
    with pytest.raises(CnnlensError, match="option neuron must be"):
        cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron="3")
    with pytest.raises(CnnlensError, match="No layer named"):
        cnnlens.explain(net, x, "layer_gradient", layer="b2c9")


def test_default_layer_is_the_last_convolution(net, x) -> None:
    e = cnnlens.explain(net, x, "layer_gradient_x_activation", target=TARGETS)
    assert e.layer == "head" and e.attributions.shape == (3, 8, 4, 4)
    n = cnnlens.explain(net, x, "neuron_gradient", neuron=0)
    assert n.layer == "head"


def test_smoothing_works_on_layer_and_neuron_methods(net, x) -> None:
    e = cnnlens.explain(net, x, "layer_gradient_x_activation", target=TARGETS, layer=SKIPPED, smooth="smoothgrad",
                        smooth_samples=3)  # fmt: skip
    assert e.attributions.shape == (3, 6, 8, 8)
    n = cnnlens.explain(net, x, "neuron_gradient", layer=SKIPPED, neuron=UNIT, smooth="vargrad", smooth_samples=3)
    assert (n.attributions >= 0).all() and n.attributions.abs().sum() > 0
