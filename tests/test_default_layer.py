"""The default layer of CAM and layer methods: the last spatial layer every path from the input to the score passes
through (a dominator of the output in the traced graph), the outermost module with that output.

On torchvision and timm models with random weights (the choice depends on the graph, not on the weights), toy
models with a side head, a dead branch, parallel branches only and untraceable control flow, a layer whose
channels are all zero (Ablation-/Score-CAM used to crash or say nothing), and vision transformers (refused).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.attribution.cam._degenerate import DegenerateMapWarning
from cnnlens.models import default_layer, last_conv_layer

tv = pytest.importorskip("torchvision.models")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.usefixtures("one_thread")


def _torchvision(name: str) -> nn.Module:
    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(tv, name)(weights=None, **kwargs).eval()


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("resnet18", 64, "layer4"),  # the block output (after the residual add), not layer4.1.conv2
        ("resnet50", 64, "layer4"),
        ("vgg11_bn", 64, "features"),  # its output is its last max-pool's: the whole feature map
        ("densenet121", 64, "features"),  # after norm5, not a 32-channel conv inside the last dense layer
        ("convnext_tiny", 64, "features"),  # whose output is the last stage's (features.7)
        ("inception_v3", 107, "Mixed_7c"),  # not a conv inside one of its branches (at 107 px Mixed_7c is 2 x 2)
        ("googlenet", 64, "inception5b"),
        ("efficientnet_b0", 64, "features"),  # whose output is features.8, the 1 x 1 conv head block
        ("mobilenet_v2", 64, "features"),
    ],
)
def test_torchvision_default_layer(name: str, size: int, expected: str) -> None:
    model = _torchvision(name)
    assert default_layer(model, (1, 3, size, size)) == expected


@pytest.mark.parametrize(("name", "expected"), [("resnet18d", "layer4"), ("regnetx_002", "s4")])
def test_timm_default_layer(name: str, expected: str) -> None:
    model = timm.create_model(name, pretrained=False).eval()
    assert default_layer(model, (1, 3, 64, 64)) == expected


def test_inception_at_small_input_takes_the_last_block_larger_than_1x1() -> None:
    """At 96 px Mixed_7c is 1 x 1: the last spatial layer every path passes through is then Mixed_6e."""
    assert default_layer(_torchvision("inception_v3"), (1, 3, 96, 96)) == "Mixed_6e"


def test_explanation_says_which_layer_and_why() -> None:
    model = _torchvision("resnet18")
    x = torch.rand(1, 3, 64, 64)
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    e = cnnlens.explain(model, x, "grad_cam", progress=False)
    assert e.info["layers"] == ["layer4"]
    info = e.info["default_layer"]
    assert info["layer"] == "layer4" and info["traced"] is True
    assert "every path to the score passes through" in info["why"]
    again = cnnlens.explain(model, x, "grad_cam", progress=False)
    assert e.passes - again.passes == 1  # the probe ran once for this model state and input shape
    assert not model.training and hooks == [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    le = cnnlens.explain(model, x, "layer_gradient_x_activation", progress=False)
    assert le.layer == "layer4" and le.attributions.shape == (1, 512, 2, 2)


# ---- toy models -----------------------------------------------------------------------------------------------------
def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


class SideHead(nn.Module):
    """Deep supervision: a side head on the middle features, whose conv runs last; eval returns the main logits."""

    def __init__(self, both: bool = False) -> None:
        super().__init__()
        self.both = both
        self.stem, self.trunk = _block(3, 4), _block(4, 6)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, 3)
        self.side = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        mid = self.stem(x)
        main = self.fc(self.pool(self.trunk(mid)).flatten(1))
        side = self.side(mid)  # the last Conv2d that runs
        return (main, side) if self.both else main


class DeadBranch(nn.Module):
    """A branch that runs (its conv last) and reaches nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.dead = nn.Sequential(_block(3, 4), _block(4, 6)), _block(6, 2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        self.dead(f)
        return self.fc(f.mean((2, 3)))


class ParallelOnly(nn.Module):
    """Two branches pooled separately and joined after pooling: no spatial layer carries the whole score."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = _block(3, 4), _block(3, 4)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.left(x).mean((2, 3)), self.right(x).amax((2, 3))], 1))


class Branchy(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it); `b` is the last conv, inside one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = _block(3, 4), _block(3, 4), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 1e9:
            x = -x
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


@pytest.mark.parametrize("both", [False, True])
def test_side_head_is_never_the_default(both: bool) -> None:
    net = SideHead(both).eval()
    model = cnnlens.models.SelectOutput(net, 0) if both else net
    prefix = "model." if both else ""
    assert last_conv_layer(model, (1, 3, 8, 8)) == prefix + "side.0"  # the old rule's answer
    assert default_layer(model, (1, 3, 8, 8)) == prefix + "trunk"
    e = cnnlens.explain(model, torch.rand(1, 3, 8, 8), "score_cam", progress=False)
    assert e.info["layers"] == [prefix + "trunk"]


def test_dead_branch_is_never_the_default() -> None:
    net = DeadBranch().eval()
    assert last_conv_layer(net, (1, 3, 8, 8)) == "dead.0"
    assert default_layer(net, (1, 3, 8, 8)) == "body"


def test_no_spatial_layer_on_every_path_lists_the_candidates() -> None:
    net = ParallelOnly().eval()
    with pytest.raises(cnnlens.CnnlensError, match=r"parallel branches") as err:
        cnnlens.explain(net, torch.rand(1, 3, 8, 8), "grad_cam", progress=False)
    assert "left" in str(err.value) and "right" in str(err.value) and "layer=" in str(err.value)


def test_untraceable_model_falls_back_to_the_last_convolution_and_says_so() -> None:
    net = Branchy().eval()
    e = cnnlens.explain(net, torch.rand(1, 3, 8, 8), "grad_cam", progress=False)
    info = e.info["default_layer"]
    assert e.info["layers"] == ["b.0"] and info["traced"] is False
    assert "could not be checked" in info["why"] and "torch.fx cannot trace" in info["why"]


# ---- layers whose channels are all zero ---------------------------------------------------------------------------
class ZeroLayer(nn.Module):
    """`dead` outputs zeros in every channel (zero weights, a negative bias, ReLU); a skip path carries the score."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _block(3, 4)
        self.dead = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        nn.init.zeros_(self.dead[0].weight)
        nn.init.constant_(self.dead[0].bias, -1.0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.fc((h + self.dead(h)).mean((2, 3)))


@pytest.mark.parametrize("method", ["ablation_cam", "score_cam", "grad_cam"])
def test_cam_on_a_layer_of_zeros_warns_instead_of_crashing(method: str) -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.warns(DegenerateMapWarning, match=r"'dead' outputs zeros in all 4 channels") as rec:
        e = cnnlens.explain(ZeroLayer().eval(), x, method, layer="dead", progress=False)
    assert "images 0, 1" in str(rec[0].message) and "leave layer= out" in str(rec[0].message)
    assert torch.equal(e.attributions, torch.zeros(2, 1, 8, 8))


def test_zero_initialised_batchnorm_after_the_layer_warns_with_the_cause() -> None:
    """timm's resnet18d ends each residual branch with a BatchNorm whose scale starts at zero: at the old default
    (layer4.1.conv2) the score's gradient is zero and the map is empty; at the new default (layer4) it is not."""
    model = timm.create_model("resnet18d", pretrained=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with pytest.warns(DegenerateMapWarning, match=r"gradient at layer 'layer4.1.conv2' is zero.*zero-initialised"):
        cnnlens.explain(model, x, "grad_cam", layer="layer4.1.conv2", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateMapWarning)
        e = cnnlens.explain(model, x, "grad_cam", progress=False)
    assert e.info["layers"] == ["layer4"] and e.info["layer_maps"][0].abs().amax() > 0


# ---- vision transformers ------------------------------------------------------------------------------------------
def _tiny_vit() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64).eval()


@pytest.mark.parametrize("method", ["grad_cam", "layer_gradient_x_activation", "neuron_gradient"])
def test_vit_has_no_default_layer(method: str) -> None:
    vit = _tiny_vit().train()
    assert last_conv_layer(vit, (1, 3, 32, 32)) == "conv_proj"  # the old rule's answer: the patch embedding
    with pytest.raises(cnnlens.CnnlensError, match=r"tokens.*after 'conv_proj' \(its patch embedding\)"):
        cnnlens.explain(vit, torch.rand(1, 3, 32, 32), method, progress=False, **_neuron(method))
    assert vit.training and all(not m._forward_hooks and not m._forward_pre_hooks for m in vit.modules())


def _neuron(method: str) -> dict:
    return {"neuron": 0} if method.startswith("neuron") else {}


class LinearPatches(nn.Module):
    """A transformer on linearly embedded patches: no convolution, no spatial layer at all."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3 * 16, 16)
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = nn.functional.unfold(x, 4, stride=4).transpose(1, 2)
        return self.head(self.encoder(self.embed(patches)).mean(1))


def test_transformer_without_spatial_layers_is_refused_clearly() -> None:
    with pytest.raises(cnnlens.CnnlensError, match=r"tokens.*\(embed, encoder.*no spatial layer before them"):
        cnnlens.explain(LinearPatches().eval(), torch.rand(1, 3, 8, 8), "grad_cam", progress=False)


def test_timm_vit_has_no_default_layer() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    with pytest.raises(cnnlens.CnnlensError, match=r"after 'patch_embed.proj' \(its patch embedding\)"):
        default_layer(vit, (1, 3, 32, 32))


@pytest.mark.parametrize("method", ["grad_cam", "layer_activation", "layer_gradient", "layer_integrated_gradients"])
def test_cam_and_layer_methods_on_a_token_layer_named_by_hand_are_refused(method: str) -> None:
    vit = _tiny_vit()
    with pytest.raises(cnnlens.CnnlensError, match=r"outputs tokens, shape \(1, 17, 32\).*not supported yet"):
        cnnlens.explain(vit, torch.rand(1, 3, 32, 32), method, layer="encoder.layers", progress=False)


def test_cam_emptied_only_by_its_relu_is_an_answer_not_a_warning() -> None:
    """Every channel of `0` speaks against class 0 (negative weights after positive activations): Grad-CAM's
    weighted sum is negative everywhere and its ReLU leaves an empty map; that is the method's answer (nothing
    supports class 0), so no DegenerateMapWarning; class 1 gets a positive map."""
    net = nn.Sequential(_block(3, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[3].weight.copy_(torch.tensor([[-1.0, -2.0, -1.0, -3.0], [1.0, 1.0, 1.0, 1.0]]))
        net[0][0].bias.fill_(0.5)  # every unit active
        net[0][0].weight.abs_()
    x = torch.rand(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateMapWarning)
        e = cnnlens.explain(net, x, "grad_cam", target=0, progress=False)
        assert torch.equal(e.attributions, torch.zeros(1, 1, 8, 8)) and e.info["layer_maps"][0].abs().amax() == 0
        assert cnnlens.explain(net, x, "grad_cam", target=1, progress=False).attributions.amin() > 0


def test_score_cam_emptied_by_a_negative_layer_says_why() -> None:
    """Score-CAM's channel weights are a softmax (positive): at a layer whose outputs are all negative its map is
    negative everywhere and its ReLU empties it; that is the layer's fault, and it is said."""
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([-1.0, -2.0]))
    with pytest.warns(DegenerateMapWarning, match="Score-CAM weights the channels with positive weights"):
        e = cnnlens.explain(net, torch.rand(1, 3, 8, 8), "score_cam", layer="0", progress=False)
    assert not bool(e.attributions.any())


def test_score_cam_after_the_activation_as_its_warning_advises_gives_a_map() -> None:
    """The fix the warning above names: the same kind of layer followed by its activation, explained there."""
    net = nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)
    ).eval()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 1, 1] = 3.0  # channel 0 = 3 x - 1: negative in dark pixels, positive in bright ones
        net[0].bias.copy_(torch.tensor([-1.0, -2.0]))
    x = torch.linspace(0, 1, 64).view(1, 1, 8, 8).expand(1, 3, 8, 8).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateMapWarning)
        e = cnnlens.explain(net, x, "score_cam", layer="1", progress=False)
    assert bool(e.attributions.any()) and bool(e.attributions[0, 0, 0, 0] == 0)  # bright side only
