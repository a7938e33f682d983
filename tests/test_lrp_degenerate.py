"""LRP never silently degenerate: finite explosions refused, box bounds only where the input enters, a saturated
softmax (SGLRP), a score below the stabilizers, a zero score and relevance lost on the way warned about."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import cnnlens
from _nets import inputs, vgg_cnn, without_biases
from cnnlens.attribution.propagation import DegenerateRelevanceWarning

T = torch.Tensor
pytestmark = pytest.mark.usefixtures("one_thread")


class Scaled(nn.Module):
    """``net``'s logits times ``k`` (a softmax that saturates, or a degenerate scale)."""

    def __init__(self, net: nn.Module, k: float) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: T) -> T:
        return self.net(x) * self.k


def _state(model: nn.Module) -> tuple[dict, list[bool]]:
    return copy.deepcopy(model.state_dict()), [p.requires_grad for p in model.parameters()]


def test_an_exploding_relevance_is_refused_with_its_cause(lite0: cnnlens.Classifier, x: T) -> None:
    """Issue 26 case 5: γ/z^B with zero_bias on Lite0 gave relevance totalling 1e31-1e33, finite, no error."""
    before = _state(lite0.module)
    with pytest.raises(cnnlens.CnnlensError, match=r"exploded: its total \|R\| is .*zero_bias=True on a model that"):
        cnnlens.explain(lite0, x, "lrp", composite="epsilon_gamma_box", zero_bias=True)
    after = _state(lite0.module)
    assert after[1] == before[1]
    assert all(torch.equal(v, before[0][k]) for k, v in after[0].items())
    # what the message offers works: the biases kept, or a z+ composite with zero_bias
    for options in ({"composite": "epsilon_gamma_box"}, {"composite": "epsilon_plus", "zero_bias": True}):
        e = cnnlens.explain(lite0, x, "lrp", **options)
        assert float(e.attributions.abs().sum()) <= float(e.info["initial_relevance"].abs().sum()), options


def test_layer_lrp_with_a_box_composite_never_reaches_the_input_layer(lite0: cnnlens.Classifier, x: T) -> None:
    """The z^B bounds are the input's: layer_lrp stops at a hidden layer, so every layer it passes gets its
    kind's rule (on main: "expanded size ... must match", the input bounds broadcast to a hidden layer)."""
    e = cnnlens.explain(lite0, x, "layer_lrp", layer="_blocks.15", composite="epsilon_gamma_box")
    same = cnnlens.explain(lite0, x, "layer_lrp", layer="_blocks.15", composite={"conv": "gamma", "linear": "epsilon"})
    torch.testing.assert_close(e.attributions, same.attributions, rtol=0, atol=0)
    assert e.attributions.abs().sum() > 0
    assert not any(r["rule"] == "zbox" for r in e.info["rules"])


def test_a_box_rule_without_bounds_at_a_hidden_layer_says_the_bounds_are_the_inputs() -> None:
    net = vgg_cnn()
    with pytest.raises(cnnlens.CnnlensError, match="apply only at the first layer, the one the input enters"):
        cnnlens.explain(net, inputs(), "lrp", composite={"conv": "zbox", "linear": "epsilon"}, bounds=(-4.0, 4.0))


def test_sglrp_initial_relevance_is_accurate_when_the_softmax_nearly_saturates() -> None:
    """``p_t (1 - p_t)`` lost to rounding in float32 once ``p_t`` is within 6e-8 of 1 (on main: 8.5e-9 where the
    float64 truth is 1.7e-8); the start is now computed without that cancellation."""
    net = Scaled(vgg_cnn(), 100.0).eval()
    x = inputs()
    e = cnnlens.explain(net, x, "sglrp", composite="epsilon")
    logits = net(x).detach().double()
    for i in range(x.shape[0]):
        t = int(logits[i].argmax())
        jac = torch.autograd.functional.jacobian(lambda z, t=t: torch.softmax(z, 0)[t], logits[i])
        torch.testing.assert_close(e.info["initial_relevance"][i].double(), jac, rtol=1e-4, atol=1e-38)


def test_sglrp_warns_when_the_softmax_saturates() -> None:
    net = Scaled(vgg_cnn(), 1000.0).eval()
    with pytest.warns(DegenerateRelevanceWarning, match=r"softmax saturates \(rows 0, 2\).*Explain the logit with lrp"):
        e = cnnlens.explain(net, inputs(), "sglrp", composite="epsilon")
    assert torch.equal(e.attributions[0], torch.zeros_like(e.attributions[0]))


def test_lrp_warns_when_the_outputs_are_below_the_stabilizers_and_the_advice_works() -> None:
    """Logits of 1e-8 (a degenerate scale): the epsilon of the last layer absorbs 99% of the score."""
    net = Scaled(without_biases(vgg_cnn()), 1e-8).eval()
    x = inputs()
    with pytest.warns(DegenerateRelevanceWarning, match=r"below the rules' stabilizers.*epsilon=stabilizer=4e-15\)"):
        e = cnnlens.explain(net, x, "lrp", composite="epsilon", zero_bias=True)
    score = net(x).detach().amax(1)
    assert (e.attributions.flatten(1).sum(1) < 0.05 * score).all()
    e = cnnlens.explain(net, x, "lrp", composite="epsilon", zero_bias=True, epsilon=4e-15, stabilizer=4e-15)
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), score, rtol=1e-4, atol=0)


def test_lrp_warns_when_the_explained_score_is_zero() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.zero_()
    with pytest.warns(DegenerateRelevanceWarning, match="the explained score is 0 or below float precision"):
        cnnlens.explain(net, inputs(1, 3, 2, 2), "lrp", composite="epsilon")


def test_lrp_warns_when_no_relevance_reaches_the_input() -> None:
    """z+ on a unit with only negative contributions drops its relevance: an all-zero map for a score of -4."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False)).eval()
    with torch.no_grad():
        net[1].weight.fill_(-1.0)
    with pytest.warns(DegenerateRelevanceWarning, match="reached no input although the initial relevance is not 0"):
        e = cnnlens.explain(net, torch.ones(1, 1, 2, 2), "lrp", composite={"linear": "zplus"})
    assert torch.equal(e.attributions, torch.zeros_like(e.attributions))
