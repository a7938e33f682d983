"""CAM on GAP networks whose pooling is written in the forward code (issue 25 item 5).

torchvision's mobilenet_v2 (``F.adaptive_avg_pool2d``), mnasnet and shufflenet_v2 (``x.mean([2, 3])``) and
densenet121 (``F.relu`` between ``features`` and the pooling) used to be refused. Truth: a hand computation,
``CAM_c = sum_k w_ck * phi(A_k)`` with ``A`` captured by our own hook and ``phi`` the element-wise function the
model applies before pooling; and, where nothing comes between, Grad-CAM at the same layer, whose channel weights
are ``w_ck / (h w)``, so ``ReLU(CAM) = h w * Grad-CAM`` exactly. Random weights, BatchNorm statistics calibrated
on three photos (plain init leaves activations degenerate), one 64 px image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from _zoo import calibrate
from cnnlens.data import sample_image

torchvision = pytest.importorskip("torchvision")
pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
MEAN, STD = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def photos(size: int = 64) -> T:
    out = []
    for name in ("chelsea", "coffee", "astronaut"):
        image = sample_image(name).resize((size, size))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255
        out.append((pixels - MEAN) / STD)
    return torch.stack(out)


def calibrated(name: str) -> nn.Module:
    """A torchvision net with random weights whose BatchNorm statistics are those of the three photos."""
    torch.manual_seed(0)
    return calibrate(getattr(torchvision.models, name)(weights=None), photos())


# (architecture, the layer whose maps are pooled, the element-wise functions between it and the pooling)
NETS = [
    ("mobilenet_v2", "features", []),
    ("mnasnet0_5", "layers", []),
    ("shufflenet_v2_x0_5", "conv5", []),
    ("densenet121", "features", ["relu(...)"]),
]


def hand_cam(model: nn.Module, layer: str, x: T, target: int, relu: bool) -> tuple[T, T]:
    """(sum_k w_ck phi(A_k), the logits), A captured by our own hook, the head's weights found by hand."""
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _a, out: seen.update(a=out.clone()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    maps = F.relu(seen["a"]) if relu else seen["a"]
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    pooled = maps.double().mean((2, 3)) @ fc.weight.double().T + fc.bias.double()
    torch.testing.assert_close(pooled.float(), logits, rtol=1e-4, atol=1e-4)  # the head is what we assume
    cam = torch.zeros(maps.shape[-2:], dtype=torch.float64)
    for k in range(maps.shape[1]):
        cam += float(fc.weight[target, k].detach()) * maps[0, k].double()
    return cam, seen["a"]


@pytest.mark.parametrize(("arch", "layer", "applied"), NETS)
def test_cam_equals_the_hand_computation(arch: str, layer: str, applied: list[str]) -> None:
    model = calibrated(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = photos()[:1]
    with torch.no_grad():
        target = int(model(x).argmax(1))
    e = cnnlens.explain(model, x, "cam", target=target, progress=False)
    assert e.info["cam"]["layer"] == layer and e.info["cam"]["applied"] == applied
    ref, acts = hand_cam(model, layer, x, target, relu=bool(applied))
    cam = e.info["layer_maps"][0][0, 0]
    assert cam.shape == (2, 2) and float(ref.abs().max()) > 1e-3  # not degenerate
    torch.testing.assert_close(cam.double(), ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    if applied:  # densenet: the ReLU matters, CAM is computed on the activated maps
        assert bool((acts < 0).any())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(("arch", "layer"), [(a, n) for a, n, applied in NETS if not applied])
def test_relu_of_cam_is_hw_times_grad_cam_at_the_pooled_layer(arch: str, layer: str) -> None:
    """y_c = b_c + sum_k w_ck mean_ij A_kij, so dy_c / dA_kij = w_ck / (h w): Grad-CAM = ReLU(CAM) / (h w)."""
    model = calibrated(arch)
    x, targets = photos()[:1].repeat(12, 1, 1, 1), list(range(0, 120, 10))  # one photo, twelve classes
    cam = cnnlens.explain(model, x, "cam", target=targets, progress=False).info["layer_maps"][0]
    grad = cnnlens.explain(model, x, "grad_cam", target=targets, layer=layer, progress=False).info["layer_maps"][0]
    hw = cam.shape[-1] * cam.shape[-2]
    assert bool(((cam < 0).flatten(1).any(1) & (cam > 0).flatten(1).any(1)).any())  # the ReLU matters
    torch.testing.assert_close(F.relu(cam) / hw, grad, rtol=1e-4, atol=1e-6 * float(cam.abs().max()))


# ---- toy heads: functional forms that are CAM, and heads where CAM does not apply ------------------------------
class Head(nn.Module):
    """conv -> conv -> (head) ; ``kind`` picks how the forward code pools and classifies."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.kind = kind
        self.conv, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.fc, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 3)
        self.mix = nn.Conv2d(6, 6, 1)

    def forward(self, x: T) -> T:
        a = self.conv2(self.conv(x))
        k = self.kind
        if k == "avg_pool_view":  # avg_pool over the whole 8 x 8 map, view with the batch size read from x
            return self.fc2(F.avg_pool2d(F.gelu(a), 8).view(x.size(0), -1))
        if k == "mean_keepdim":
            return self.fc2(torch.clamp(a, min=0).mean((-1, -2), keepdim=True).flatten(1))
        if k == "hidden":
            return self.fc2(F.relu(self.fc(a.mean((2, 3)))))
        if k == "relu_after_pool":
            return self.fc2(F.relu(a.mean((2, 3))))
        if k == "conv_after_pool":
            return self.fc2(self.mix(F.adaptive_avg_pool2d(a, 1)).flatten(1))
        if k == "two_reads":
            return self.fc2(a.mean((2, 3))) + a.amax((1, 2, 3))[:, None]
        raise AssertionError(k)


X8 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("kind", "phi"), [("avg_pool_view", F.gelu), ("mean_keepdim", F.relu)])
def test_functional_heads_are_cam(kind: str, phi) -> None:
    net = Head(kind).eval()
    e = cnnlens.explain(net, X8, "cam", target=[0, 2], progress=False)
    assert e.info["cam"]["layer"] == "conv2" and len(e.info["cam"]["applied"]) == 1
    with torch.no_grad():
        maps = phi(net.conv2(net.conv(X8)))
    ref = torch.einsum("bk,bkhw->bhw", net.fc2.weight[[0, 2]], maps)[:, None]
    torch.testing.assert_close(e.info["layer_maps"][0], ref)


def test_a_pooling_window_smaller_than_the_map_is_refused() -> None:
    """avg_pool2d(a, 8) on a 9 x 9 map gives one value, the mean of its top-left 8 x 8 corner: not global."""
    with pytest.raises(cnnlens.CnnlensError, match=r"cam needs global average pooling: .*\(9, 9\), so the pooled"):
        cnnlens.explain(Head("avg_pool_view").eval(), torch.randn(1, 3, 9, 9), "cam", target=0, progress=False)


@pytest.mark.parametrize(
    ("kind", "default", "at_conv2"),
    [
        (
            "hidden",
            r"head has a hidden layer \(fc \(Linear\) before fc2",
            r"after the linear layer fc .Linear. this .* relu.* hidden layer",
        ),
        ("relu_after_pool", r"after the global average pooling this model applies relu", r"pooling .* applies relu"),
        ("conv_after_pool", r"before the linear layer fc2 .* applies mix \(Conv2d\)", r"pooling .* applies mix"),
        ("two_reads", r"this model's output comes from add", r"conv2 .* more than one .* read by .*amax"),
    ],
)
def test_heads_where_cam_does_not_apply_are_refused_with_the_reason(kind: str, default: str, at_conv2: str) -> None:
    """Walking back from the logits (no layer given) and forward from a given layer both say what is in the way."""
    net = Head(kind).eval()
    with pytest.raises(cnnlens.CnnlensError, match=default + ".*[Uu]se grad_cam"):
        cnnlens.explain(net, X8, "cam", target=0, progress=False)
    with pytest.raises(cnnlens.CnnlensError, match=at_conv2 + ".*[Uu]se grad_cam"):
        cnnlens.explain(net, X8, "cam", target=0, layer="conv2", progress=False)


def test_a_timm_head_whose_linear_layer_is_traced_through() -> None:
    """timm's ``Linear`` (an nn.Linear subclass) calls ``F.linear`` in its own forward code; regnetx_002's head
    pools, drops out, applies it, then an identity ``flatten``."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("regnetx_002", pretrained=False).eval()
    x = photos()[:1]
    e = cnnlens.explain(model, x, "cam", target=3, progress=False)
    assert e.info["cam"]["layer"] == "final_conv" and e.info["cam"]["linear"] == "head.fc"
    ref, _ = hand_cam(model, "final_conv", x, 3, relu=False)
    torch.testing.assert_close(
        e.info["layer_maps"][0][0, 0].double(), ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max())
    )


def test_squeezenet_pools_its_class_maps_straight_into_the_logits() -> None:
    """SqueezeNet: final 1x1 conv, ReLU, global average pooling, flatten, no linear layer: each class has its own
    map (the class weights are the identity), which CAM returns; Grad-CAM there is that map / (h w)."""
    model = calibrated("squeezenet1_1")
    x = photos()[:1].repeat(3, 1, 1, 1)
    e = cnnlens.explain(model, x, "cam", target=[0, 7, 500], progress=False)
    assert e.info["cam"]["layer"] == "classifier.2" and e.info["cam"]["linear"] is None
    seen = {}
    handle = model.classifier[2].register_forward_hook(lambda _m, _a, out: seen.update(a=out.clone()))
    with torch.no_grad():
        model(x[:1])
    handle.remove()
    ref = seen["a"][0, [0, 7, 500]][:, None]
    torch.testing.assert_close(e.info["layer_maps"][0], ref)
    grad = cnnlens.explain(model, x, "grad_cam", target=[0, 7, 500], layer="classifier.2", progress=False)
    hw = ref.shape[-1] * ref.shape[-2]
    torch.testing.assert_close(grad.info["layer_maps"][0] * hw, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
