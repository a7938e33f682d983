"""LRP against Zennit (where its module hooks reach every operation) and conservation on EfficientNet-Lite0."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from _nets import init_, inputs, residual_cnn, vgg_cnn, without_biases
from _zennit import merge_batch_norms, zennit

T = torch.Tensor
pytestmark = pytest.mark.usefixtures("one_thread")  # small nets: one thread is faster on a busy machine
BOUNDS = (-3.0, 3.0)


class PadConv(nn.Conv2d):
    """A TensorFlow-style "same" convolution: a ZeroPad2d module, then the convolution (as in EfficientNet-Lite)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))

    def forward(self, x: T) -> T:
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def pad_cnn() -> nn.Sequential:
    net = nn.Sequential(
        PadConv(3, 6, 3, stride=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),  # depthwise
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )
    return init_(net, seed=6)


def zennit_lrp(net: nn.Module, x: T, composite: str, zero_bias: bool = False) -> tuple[T, T]:
    """Zennit's relevance for the predicted classes (initial relevance: the logit), with its BatchNorm merging."""
    z = zennit()
    from zennit.composites import (
        EpsilonAlpha2Beta1,
        EpsilonGammaBox,
        EpsilonPlus,
        EpsilonPlusFlat,
        LayerMapComposite,
        layer_map_base,
    )
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    kw = {"canonizers": [merge_batch_norms(net)], "zero_params": "bias" if zero_bias else None}
    made = {
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(**kw),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(low=BOUNDS[0], high=BOUNDS[1], **kw),
        "epsilon_alpha2_beta1": lambda: EpsilonAlpha2Beta1(**kw),
        "epsilon_plus": lambda: EpsilonPlus(**kw),
        "epsilon": lambda: LayerMapComposite(
            layer_map_base() + [(Convolution, Epsilon(zero_params=kw["zero_params"])), (nn.Linear, Epsilon())],
            canonizers=kw["canonizers"],
        ),
    }
    net = copy.deepcopy(net)  # Zennit's canonizers change the model while they are applied
    with torch.no_grad():
        logits = net(x)
    t = logits.argmax(1, keepdim=True)
    start = torch.zeros_like(logits).scatter(1, t, logits.gather(1, t))
    with z.attribution.Gradient(net, made[composite]()) as attributor:
        _, relevance = attributor(x.clone().requires_grad_(True), start)
    return relevance, logits.gather(1, t)[:, 0]


COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus", "epsilon")


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("make", [vgg_cnn, pad_cnn], ids=["vgg", "pad_depthwise"])
def test_equal_to_zennit_on_module_only_nets(make, composite: str) -> None:
    net = make()
    x = inputs(h=9, w=9) if make is pad_cnn else inputs()
    theirs, _ = zennit_lrp(net, x, composite)
    ours = cnnlens.explain(net, x, "lrp", composite=composite, bounds=BOUNDS).attributions
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


def test_zennit_duplicates_relevance_at_functional_adds_where_ours_conserves() -> None:
    """Module hooks do not see ``x + y`` in a forward method: its gradient hands each summand all of the sum's
    relevance. Without biases, our relevance sums to the logit; Zennit's does not."""
    net = without_biases(residual_cnn("functional"))
    x = inputs()
    theirs, logit = zennit_lrp(net, x, "epsilon", zero_bias=True)
    ours = cnnlens.explain(net, x, "lrp", composite="epsilon", zero_bias=True, epsilon=1e-9, stabilizer=1e-9)
    torch.testing.assert_close(ours.attributions.flatten(1).sum(1), logit, rtol=1e-4, atol=0)
    off = (theirs.flatten(1).sum(1) - logit).abs() / logit.abs()
    assert (off > 0.05).all(), off


@pytest.fixture(scope="module")
def bias_free_lite0(lite0: cnnlens.Classifier) -> nn.Module:
    """Lite0's weights without biases, BatchNorm shifts or running means: relevance is conserved exactly."""
    return without_biases(copy.deepcopy(lite0.module))


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_gamma_box"])
def test_relevance_is_conserved_on_efficientnet_lite0(bias_free_lite0: nn.Module, x: T, composite: str) -> None:
    with torch.no_grad():
        logits = bias_free_lite0(x)
    e = cnnlens.explain(bias_free_lite0, x, "lrp", composite=composite, zero_bias=True, bounds=(-1.0, 1.0))
    torch.testing.assert_close(e.attributions.sum(), logits.max(), rtol=1e-4, atol=0)
    rules = e.info["rules"]
    assert sum("(folded)" in r["operation"] for r in rules) == 49  # every convolution with its BatchNorm
    assert sum(r["operation"] == "Tensor.add" for r in rules) == 9  # the functional residual adds


def test_lite0_with_its_biases_keeps_the_model_and_lists_its_rules(lite0: cnnlens.Classifier, x: T) -> None:
    before = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    e = cnnlens.explain(lite0, x, "lrp")  # epsilon_plus_flat; the first convolution's box from the normalization
    assert torch.isfinite(e.attributions).all() and e.attributions.shape == x.shape
    assert all(torch.equal(v, before[k]) for k, v in lite0.module.state_dict().items())
    first = e.info["rules"][0]
    assert first == {"layer": "_conv_stem", "operation": "torch.conv2d + _bn0 (folded)", "rule": "flat"}


def test_an_overflowing_relevance_is_refused_with_what_to_do(lite0: cnnlens.Classifier, x: T) -> None:
    with pytest.raises(cnnlens.CnnlensError, match=r"overflowed.*keep the biases \(zero_bias=False\)"):
        cnnlens.explain(lite0, x, "lrp", composite="epsilon", zero_bias=True)
    e = cnnlens.explain(lite0, x, "lrp", composite="epsilon", zero_bias=False)
    assert torch.isfinite(e.attributions).all()
