"""CAM methods on the real EfficientNet-Lite0 (ReLU6, one ReLU6 module reused per block, residual MBConv blocks).

Truth: Captum's ``LayerGradCam`` (+ bilinear interpolation) for Grad-CAM, and the plain per-paper references of
``test_cam_reference`` (own hooks and autograd, loops over channels) for the other variants. Score-CAM and
Ablation-CAM need a forward pass per channel, so they are checked on a 16-channel layer of the first block.
One image: the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cnnlens
from cnnlens.data import sample_image
from cnnlens.models import _layers
from test_cam_reference import (
    assert_close,
    bias_layers,
    captum_attr,
    needs_captum,
    reference_fullgrad,
    reference_layer_map,
    up,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:captum"),
    pytest.mark.usefixtures("one_thread"),
]
T = torch.Tensor
HEAD = "_conv_head"  # 1280 channels, 7 x 7
SMALL = "_blocks.0._project_conv"  # 16 channels, 112 x 112


def captum_grad_cam(model, layer: str, x: T, target: int) -> tuple[T, T]:
    raw = captum_attr.LayerGradCam(model, model.get_submodule(layer)).attribute(
        x.clone(), target=target, relu_attributions=True
    )
    return raw, captum_attr.LayerAttribution.interpolate(raw, x.shape[-2:], interpolate_mode="bilinear")


@needs_captum
@pytest.mark.parametrize("layer", [HEAD, "_blocks.14._bn2"])  # _blocks.14: inside a residual block
def test_grad_cam_equals_captum(lite0, x, target, layer) -> None:
    raw, theirs = captum_grad_cam(lite0.module, layer, x, target)
    ours = cnnlens.explain(lite0, x, "grad_cam", target=target, layer=layer)
    assert ours.attributions.shape == (1, 1, 224, 224)
    assert_close(ours.attributions, theirs)
    assert_close(ours.info["layer_maps"][0], raw)
    assert ours.passes == 1


def test_block_14_is_residual(lite0, x) -> None:
    """The Grad-CAM check at _blocks.14._bn2 is inside a residual block: the block adds its input to it."""
    block = lite0.module._blocks[14]
    seen = {}
    hooks = [
        block.register_forward_hook(lambda _m, args, out: seen.update(inp=args[0], out=out)),
        block._bn2.register_forward_hook(lambda _m, _a, out: seen.update(bn2=out)),
    ]
    try:
        with torch.no_grad():
            lite0.module(x)
    finally:
        for h in hooks:
            h.remove()
    torch.testing.assert_close(seen["out"], seen["bn2"] + seen["inp"])


def test_default_layer_is_the_head_conv(lite0, x, target) -> None:
    _layers._FOUND.pop(lite0.module, None)  # forget a probe an earlier test ran
    r = cnnlens.explain(lite0, x, "grad_cam", target=target)
    assert r.info["layers"] == [HEAD]
    assert r.passes == 2  # the probe and the Grad-CAM pass
    again = cnnlens.explain(lite0, x, "grad_cam", target=target)
    assert again.passes == 1 and torch.equal(again.attributions, r.attributions)  # the probe's answer was kept


@pytest.mark.parametrize(
    "method", ["grad_cam_pp", "xgrad_cam", "layer_cam", "hires_cam", "eigen_cam", "eigen_grad_cam"]
)
def test_cheap_variants_equal_their_papers(lite0, x, target, method) -> None:
    ours = cnnlens.explain(lite0, x, method, target=target, layer=HEAD)
    ref = reference_layer_map(method, lite0.module, HEAD, x, target)
    rtol = 1e-4 if method.startswith("eigen") else 1e-5
    assert_close(ours.info["layer_maps"][0][0, 0], ref, rtol)
    assert_close(ours.attributions[0, 0], up(ref, (224, 224)), rtol)
    assert ref.abs().max() > 0


@pytest.mark.parametrize("method", ["score_cam", "ablation_cam"])
def test_score_and_ablation_cam_equal_their_papers(lite0, x, target, method) -> None:
    ours = cnnlens.explain(lite0, x, method, layer=SMALL, batch_size=8)  # target: the predicted class
    ref = reference_layer_map(method, lite0.module, SMALL, x, target)
    assert_close(ours.info["layer_maps"][0][0, 0], ref)
    assert_close(ours.attributions[0, 0], up(ref, (224, 224)))
    if method == "score_cam":
        assert ours.passes == 1 + 16 + 1
    else:  # cut at the layer: the logits, one head pass, one tail pass that checks the cut, one per channel
        assert ours.passes == 1 + 1 + 1 + 16
        assert ours.info["rows"] == {"head": 1, "tail": 17} and ours.info["cut"]["path"] == "traced"


def _gap_input_and_grad(lite0, x, target) -> tuple[T, T]:
    """The map entering the global average pooling and the target logit's gradient w.r.t. it (own hook)."""
    store = {}

    def hook(_m, args):
        store["a"] = args[0].detach().clone().requires_grad_(True)
        return (store["a"],)

    h = lite0.module._avg_pooling.register_forward_pre_hook(hook)
    try:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(lite0.module(x)[0, target], store["a"])
    finally:
        h.remove()
    return store["a"].detach()[0], g[0]


def test_cam_equals_the_fc_weights_and_grad_cam_times_hw(lite0, x, target) -> None:
    a, g = _gap_input_and_grad(lite0, x, target)
    w = lite0.module._fc.weight[target].detach()
    ref = torch.zeros_like(a[0])
    for k in range(a.shape[0]):
        ref += w[k] * a[k]
    ours = cnnlens.explain(lite0, x, "cam", target=target)
    cam = ours.info["layer_maps"][0][0, 0]
    assert_close(cam, ref)
    assert_close(ours.attributions[0, 0], up(ref, (224, 224)))
    grad_cam = F.relu(sum(g[k].mean() * a[k] for k in range(a.shape[0])))
    assert_close(F.relu(cam) / 49, grad_cam)
    assert ours.passes == 1


@pytest.mark.parametrize("layer", ["_swish", "_blocks.1._swish"])
def test_reused_relu6_module_as_layer_is_refused(lite0, x, layer) -> None:
    with pytest.raises(cnnlens.CnnlensError, match="ran 2 times in one forward pass"):
        cnnlens.explain(lite0, x, "grad_cam", layer=layer)


def test_unknown_and_non_spatial_layers(lite0, x) -> None:
    with pytest.raises(cnnlens.CnnlensError, match="No layer named '_conv_haed'.*Did you mean: _conv_head"):
        cnnlens.explain(lite0, x, "grad_cam", layer="_conv_haed")
    with pytest.raises(cnnlens.CnnlensError, match="a CAM needs a"):
        cnnlens.explain(lite0, x, "eigen_cam", layer="_avg_pooling")


class _GuidedReLU6(torch.autograd.Function):
    """ReLU6 whose backward is guided backprop's: the positive part of the incoming gradient, where 0 < x < 6."""

    @staticmethod
    def forward(ctx, x: T) -> T:
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, g: T) -> T:
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * ((x > 0) & (x < 6)).to(g.dtype)


@needs_captum
def test_guided_grad_cam_is_guided_backprop_times_captum_grad_cam(lite0, x, target, monkeypatch) -> None:
    """Captum's GuidedGradCam is wrong here (a reused ReLU6 module per block), so its two factors are built
    independently: guided backprop by swapping F.hardtanh (what nn.ReLU6 calls) for a guided autograd function,
    Grad-CAM by Captum's LayerGradCam."""
    ours = cnnlens.explain(lite0, x, "guided_grad_cam", target=target, layer=HEAD)

    def hardtanh(t: T, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> T:
        assert (min_val, max_val) == (0.0, 6.0)
        return _GuidedReLU6.apply(t)

    _, cam = captum_grad_cam(lite0.module, HEAD, x, target)
    with monkeypatch.context() as m:
        m.setattr(F, "hardtanh", hardtanh)
        xi = x.clone().requires_grad_(True)
        (guided,) = torch.autograd.grad(lite0.module(xi)[0, target], xi)
    assert_close(ours.attributions, guided * cam)
    assert ours.passes == 2


def test_fullgrad_equals_its_paper(lite0, x, target) -> None:
    """At 64 x 64 to keep it fast: 49 BatchNorm layers (Lite0's convolutions have no bias), each channel's
    |bias x gradient| upsampled and rescaled, plus |input x gradient|."""
    small = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
    ours = cnnlens.explain(lite0, small, "fullgrad")
    t = int(ours.target[0])
    assert ours.info["layers"] == [n for n, _, _ in bias_layers(lite0.module)]
    assert len(ours.info["layers"]) == 49
    assert_close(ours.attributions[0, 0], reference_fullgrad(lite0.module, small, t))


@pytest.mark.parametrize("method", ["grad_cam", "eigen_cam", "score_cam"])
def test_batched_equals_per_image(lite0, method) -> None:
    xs = lite0.preprocess([sample_image("chelsea"), sample_image("coffee")])
    layer = SMALL if method == "score_cam" else HEAD
    both = cnnlens.explain(lite0, xs, method, layer=layer, batch_size=2)
    for i in range(2):
        one = cnnlens.explain(lite0, xs[i : i + 1], method, layer=layer, batch_size=1)
        assert_close(both.attributions[i], one.attributions[0], 1e-4 if method == "eigen_cam" else 1e-5)
        assert int(both.target[i]) == int(one.target[0])
