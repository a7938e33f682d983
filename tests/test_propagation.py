"""LRP on small nets against independent truths: input x gradient (LRP-0), conservation, hand-written rules."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from _nets import RELU_KINDS, Functional, init_, inputs, maxpool_net, residual_cnn, vgg_cnn, without_biases
from cnnlens.attribution.propagation import AlphaBeta, Gamma, ZBox, register_composite
from cnnlens.attribution.propagation._layer import conv_layer

T = torch.Tensor
pytestmark = pytest.mark.usefixtures("one_thread")  # small nets: one thread is faster on a busy machine
TINY = {"epsilon": 1e-9, "stabilizer": 1e-9}  # LRP-0 as epsilon -> 0
ALL = {"conv": "epsilon", "linear": "epsilon"}


def input_x_gradient(net: nn.Module, x: T) -> tuple[T, T]:
    """(x * d f_t / dx, f_t) for the predicted class t, by plain autograd."""
    xi = x.clone().requires_grad_(True)
    out = net(xi)
    score = out.gather(1, out.argmax(1, keepdim=True))[:, 0]
    (g,) = torch.autograd.grad(score.sum(), xi)
    return x * g, score.detach()


def lrp(net: nn.Module, x: T, **options) -> cnnlens.Explanation:
    return cnnlens.explain(net, x, "lrp", **options)


class PadGroupNet(nn.Module):
    """Asymmetric F.pad before a strided conv (TF "same"), a depthwise conv run twice, padding="same", a 1x1
    grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, stride=2)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.same = nn.Conv2d(6, 6, 4, padding="same")
        self.group = nn.Conv2d(6, 4, 1, groups=2)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: T) -> T:
        x = F.relu(self.c1(F.pad(x, (0, 1, 0, 1))))
        x = F.relu(self.same(F.relu(self.dw(F.relu(self.dw(x))))))
        return self.fc(F.relu(self.group(x)).mean((2, 3)))


@pytest.mark.parametrize("kind", RELU_KINDS)
def test_lrp0_is_input_times_gradient_with_residual_adds_batchnorm_and_avg_pooling(kind: str) -> None:
    net = residual_cnn(kind)
    x = inputs()
    ixg, _ = input_x_gradient(net, x)
    e = lrp(net, x, composite=ALL, **TINY)
    torch.testing.assert_close(e.attributions, ixg, rtol=1e-5, atol=1e-5 * ixg.abs().max().item())


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("make", [maxpool_net, lambda: init_(PadGroupNet(), seed=5)], ids=["maxpool", "pad_groups"])
def test_lrp0_is_input_times_gradient_with_max_pooling_padding_and_groups(make) -> None:
    net = make()
    x = inputs(h=9, w=9) if isinstance(net, PadGroupNet) else inputs()
    ixg, _ = input_x_gradient(net, x)
    e = lrp(net, x, composite=ALL, **TINY)
    torch.testing.assert_close(e.attributions, ixg, rtol=1e-5, atol=1e-5 * ixg.abs().max().item())


class AddBeforeNorm(nn.Module):
    """conv, a shift of its output (in place or not), BatchNorm: the BatchNorm is not folded across the shift."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        self.in_place = in_place
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        h = self.conv(x)
        if self.in_place:
            h += 0.5
        else:
            h = h + 0.5
        return self.fc(F.relu(self.bn(h)).mean((2, 3)))


def test_an_in_place_change_between_a_layer_and_its_batchnorm_stops_the_folding() -> None:
    x = inputs()
    maps = []
    for in_place in (True, False):
        e = lrp(init_(AddBeforeNorm(in_place), seed=7), x)
        assert [r["rule"] for r in e.info["rules"] if r["layer"] == "bn"] == ["pass"]
        maps.append(e.attributions)
    torch.testing.assert_close(maps[0], maps[1], rtol=0, atol=0)


def test_every_way_of_writing_the_relus_gives_the_same_map() -> None:
    maps = [lrp(residual_cnn(kind), inputs()).attributions for kind in RELU_KINDS]
    for m in maps[1:]:
        torch.testing.assert_close(m, maps[0], rtol=0, atol=0)


CONSERVING = {
    "vgg": (vgg_cnn, ("epsilon", "epsilon_gamma_box", "epsilon_plus_flat", "epsilon_plus")),
    "residual": (lambda: residual_cnn("functional"), ("epsilon", "epsilon_gamma_box")),
}


@pytest.mark.parametrize("net_name", sorted(CONSERVING))
def test_relevance_is_conserved_without_biases(net_name: str) -> None:
    make, composites = CONSERVING[net_name]
    net = without_biases(make())
    x = inputs()
    _, f = input_x_gradient(net, x)
    for composite in composites:
        e = lrp(net, x, composite=composite, zero_bias=True, bounds=(-4.0, 4.0), **TINY)
        total = e.attributions.flatten(1).sum(1)
        torch.testing.assert_close(total, f, rtol=1e-4, atol=0, msg=composite)
        torch.testing.assert_close(e.info["initial_relevance"].sum(1), f)


def test_biases_keep_their_share() -> None:
    """With biases, the ε-rule's input relevance plus what each bias took is the score: one linear layer."""
    torch.manual_seed(0)
    fc = nn.Linear(12, 3)
    net = nn.Sequential(nn.Flatten(), fc).eval()
    x = inputs(2, 3, 2, 2)
    z = net(x).detach()
    t = z.argmax(1)
    e = lrp(net, x, composite={"linear": "epsilon"}, **TINY)
    bias_share = fc.bias.detach()[t]
    torch.testing.assert_close(e.attributions.flatten(1).sum(1) + bias_share, z.gather(1, t[:, None])[:, 0])


def _dtd_zplus(x: T, layers: list[nn.Linear], target: int) -> T:
    """Deep Taylor z+ by hand, for non-negative inputs and ReLU MLPs: R_i = sum_j x_i w+_ij / sum_i x_i w+_ij R_j."""
    acts = [x.double()]
    for k, layer in enumerate(layers):
        z = acts[-1] @ layer.weight.double().T + layer.bias.double()
        acts.append(z.clamp(min=0) if k < len(layers) - 1 else z)
    r = torch.zeros_like(acts[-1])
    r[:, target] = acts[-1][:, target]
    for layer, a in zip(reversed(layers), reversed(acts[:-1]), strict=True):
        wp = layer.weight.double().clamp(min=0)  # (out, in)
        contrib = a[:, None, :] * wp[None]  # (B, out, in)
        r = (contrib / (contrib.sum(2, keepdim=True) + 1e-12) * r[:, :, None]).sum(1)
    return r


def test_zplus_is_alpha1_beta0_without_bias_and_deep_taylor_z_plus_on_non_negative_inputs() -> None:
    torch.manual_seed(3)
    l1, l2 = nn.Linear(12, 7), nn.Linear(7, 4)
    net = nn.Sequential(nn.Flatten(), l1, nn.ReLU(), l2).eval()
    x = torch.rand(3, 3, 2, 2)
    t = int(net(x)[0].argmax())
    zplus = lrp(net, x, composite={"linear": "zplus"}, zero_bias=True, target=t, **TINY).attributions
    ab10 = lrp(net, x, composite={"linear": AlphaBeta(1, 0)}, zero_bias=True, target=t, **TINY).attributions
    torch.testing.assert_close(zplus, ab10, rtol=0, atol=0)
    hand = _dtd_zplus(x.flatten(1), [l1, l2], t).view_as(x).float()
    torch.testing.assert_close(zplus, hand, rtol=1e-5, atol=1e-7)


def test_gamma_zero_is_lrp0_and_growing_gamma_tends_to_zplus() -> None:
    net = vgg_cnn()
    x = inputs()
    lrp0 = lrp(net, x, composite=ALL, epsilon=1e-6).attributions
    gamma0 = lrp(net, x, composite={"conv": "gamma", "linear": "gamma"}, gamma=0.0).attributions
    torch.testing.assert_close(gamma0, lrp0, rtol=1e-4, atol=1e-6 * lrp0.abs().max().item())
    zplus = lrp(net, x, composite={"conv": "zplus", "linear": "zplus"}).attributions
    gaps = []
    for g in (0.25, 4.0, 1e4):
        m = lrp(net, x, composite={"conv": Gamma(g), "linear": Gamma(g)}).attributions
        gaps.append(float((m - zplus).abs().sum() / zplus.abs().sum()))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3, gaps


def test_alpha_minus_beta_must_be_one() -> None:
    with pytest.raises(cnnlens.CnnlensError, match="alpha - beta = 1"):
        AlphaBeta(2, 0)
    with pytest.raises(cnnlens.CnnlensError, match="beta >= 0"):
        AlphaBeta(0.5, -0.5)
    rule = AlphaBeta(1.5, 0.5)  # accepted: relevance is kept where both signs contribute
    assert (rule.alpha, rule.beta) == (1.5, 0.5)


def test_folding_leaves_the_forward_pass_exact_and_the_folded_layer_equal_to_conv_then_batchnorm() -> None:
    net = residual_cnn("module")
    x = inputs()
    e = lrp(net, x)
    assert torch.equal(e.probabilities, torch.softmax(net(x), 1))  # the forward pass ran unfolded
    h = net.relus[0](net.bn0(net.stem(x)))
    conv, bn = net.b1c1, net.b1n1
    call = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}
    layer = conv_layer("b1c1", h, conv.weight, conv.bias, call, None)
    folded = layer.fold("b1n1", bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)
    torch.testing.assert_close(folded.forward(h, folded.weight, folded.bias), bn(conv(h)), rtol=1e-5, atol=1e-5)
    assert folded.folded == "b1n1" and layer.folded is None


def test_info_lists_the_rule_of_every_layer_in_execution_order() -> None:
    net = vgg_cnn()
    e = lrp(net, inputs())
    rules = e.info["rules"]
    layers = [(r["layer"], r["rule"]) for r in rules if r["operation"].startswith(("torch.conv2d", "F.linear"))]
    assert layers == [("0", "flat"), ("4", "zplus"), ("7", "zplus"), ("11", "epsilon(1e-06)"), ("13", "epsilon(1e-06)")]
    assert rules[0]["operation"] == "torch.conv2d + 1 (folded)"
    kinds = {r["operation"]: r["rule"] for r in rules}
    assert kinds["F.max_pool2d"] == "winner takes all" and kinds["F.avg_pool2d"] == "proportional"
    assert kinds["relu"] == "pass"


def test_user_composites_by_name_type_first_and_kind() -> None:
    net = vgg_cnn()
    x = inputs()
    e = lrp(net, x, composite={"7": "wsquare", "first": "flat", nn.Conv2d: "gamma", nn.Linear: "epsilon"})
    got = [r["rule"] for r in e.info["rules"] if r["layer"] in ("0", "4", "7", "11", "13") and "(" not in r["layer"]]
    assert got[:3] == ["flat", "gamma(0.25)", "wsquare"]
    by_kind = lrp(net, x, composite={"first": "flat", "conv": "gamma", "linear": "epsilon", "7": "wsquare"})
    torch.testing.assert_close(by_kind.attributions, e.attributions, rtol=0, atol=0)
    register_composite("test_flat_gamma", {"first": "flat", "conv": "gamma", "linear": "epsilon", "7": "wsquare"})
    named = lrp(net, x, composite="test_flat_gamma")
    torch.testing.assert_close(named.attributions, e.attributions, rtol=0, atol=0)
    with pytest.raises(cnnlens.CnnlensError, match="already registered"):
        register_composite("test_flat_gamma", {"conv": "flat"})


@pytest.mark.parametrize(
    ("composite", "phrase"),
    [
        ({"conv": "zplux", "linear": "epsilon"}, "unknown rule 'zplux'. Did you mean zplus"),
        ("epsilon_plus_flt", "unknown composite 'epsilon_plus_flt'. Did you mean epsilon_plus_flat"),
        ({"conv": "zplus"}, "has no rule for the fully connected layer 11; add one for 'linear'"),
        ({"conv": "zplus", "linear": "epsilon", "features.9": "flat"}, "names layer.*'features.9'.*not have"),
        ({"conv": 3}, "must be a rule name"),
        ({}, "non-empty mapping"),
    ],
)
def test_bad_composites_say_what_is_wrong(composite, phrase: str) -> None:
    with pytest.raises(cnnlens.CnnlensError, match=phrase):
        lrp(vgg_cnn(), inputs(), composite=composite)


def test_zbox_bounds_come_from_the_classifier_normalization_or_the_option() -> None:
    from cnnlens.models import Classifier, Preprocessing

    net = vgg_cnn()
    prep = Preprocessing(input_size=(8, 8), resize=None, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    clf = Classifier(net, prep, [f"c{i}" for i in range(5)], "vgg")
    x = prep.normalize(torch.rand(2, 3, 8, 8))
    mean, std = torch.tensor(prep.mean), torch.tensor(prep.std)
    bounds = ((-mean / std).tolist(), ((1 - mean) / std).tolist())
    from_clf = cnnlens.explain(clf, x, "lrp", composite="epsilon_gamma_box").attributions
    given = lrp(net, x, composite="epsilon_gamma_box", bounds=bounds).attributions
    explicit = lrp(net, x, composite={"first": ZBox(*bounds), "conv": "gamma", "linear": "epsilon"}).attributions
    torch.testing.assert_close(from_clf, given, rtol=0, atol=0)
    torch.testing.assert_close(explicit, given, rtol=0, atol=0)
    with pytest.raises(cnnlens.CnnlensError, match=r"bounds=\(low, high\)"):
        lrp(net, x, composite="epsilon_gamma_box")
    with pytest.raises(cnnlens.CnnlensError, match="option bounds must be"):
        lrp(net, x, composite="epsilon_gamma_box", bounds=(1.0, -1.0))


def _gated(x: T, se: nn.Conv2d) -> T:
    return x * torch.relu(se(x.mean((2, 3), keepdim=True)))  # not a gate (sigmoid): tests/test_lrp_modern.py


class Odd(nn.Module):
    """A conv net that ends with an operation chosen by name."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.se = nn.Conv2d(4, 4, 1)
        self.norm = nn.GroupNorm(2, 4)
        self.bn = nn.BatchNorm2d(4, track_running_stats=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        h = F.relu(self.conv(x))
        if self.kind == "gate":
            h = _gated(h, self.se)
        elif self.kind == "instance_norm":
            h = F.instance_norm(h)
        elif self.kind == "batch_stats":
            h = self.bn(h)
        out = h.mean((2, 3))
        if self.kind == "matmul":
            return out @ self.fc.weight.T
        out = self.fc(out)
        return torch.softmax(out, 1) if self.kind == "softmax" else out


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("gate", r"Tensor.mul \(a product of two tensors computed from the input; neither factor is a gate"),
        ("instance_norm", "no relevance rule for F.instance_norm, run in the model's forward"),
        ("batch_stats", "batch_norm with batch statistics, run in bn"),
        ("matmul", "no relevance rule for Tensor.matmul"),
        ("softmax", "no relevance rule for torch.softmax"),
    ],
)
def test_an_operation_without_a_rule_raises_naming_it_and_where_it_ran(kind: str, phrase: str) -> None:
    net = Odd(kind).eval()
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(cnnlens.UnsupportedOperationError, match=phrase):
        lrp(net, inputs())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_an_operation_out_of_sight_raises_instead_of_passing_its_gradient() -> None:
    """EfficientNet-B0's memory-efficient swish is a custom autograd Function: no torch function call is seen for it,
    and its own gradient would silently scale the relevance."""
    from efficientnet_lite_pytorch.utils import MemoryEfficientSwish

    net = nn.Sequential(nn.Conv2d(3, 4, 3), MemoryEfficientSwish(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    with pytest.raises(
        cnnlens.UnsupportedOperationError,
        match=r"reach Tensor.flatten \(run in 2\) from SwishImplementation, an operation it cannot see",
    ):
        lrp(net, inputs())


def test_sglrp_starts_from_the_softmax_jacobian_row_and_sums_to_zero() -> None:
    net = without_biases(vgg_cnn())
    x = inputs()
    e = cnnlens.explain(net, x, "sglrp", composite="epsilon", zero_bias=True, **TINY)
    logits = net(x).detach()
    t = logits.argmax(1)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda z, i=i: torch.softmax(z, 0)[t[i]], logits[i])
        torch.testing.assert_close(e.info["initial_relevance"][i], jac, rtol=1e-5, atol=1e-9)
    p = torch.softmax(logits, 1).gather(1, t[:, None])[:, 0]
    total = e.attributions.flatten(1).sum(1)
    assert (total.abs() <= 1e-4 * p * (1 - p)).all(), total


def test_clrp_is_the_positive_part_of_target_minus_dual_relevance() -> None:
    """The dual class (every other class weighted by |z_k|, scaled to the target's score) is explained on its own by
    lrp with a callable target; CLRP1 is the positive part of the difference of the two maps."""
    net = vgg_cnn()
    x = inputs(1)
    z = net(x).detach()[0]
    t = int(z.argmax())
    others = torch.ones_like(z, dtype=torch.bool)
    others[t] = False
    weights = torch.where(others, z.sign() * z[t] / z[others].abs().sum(), 0.0)  # z_k * w_k = |z_k| * scale

    def dual(logits: T) -> T:
        return (logits * weights).sum(1)

    target = lrp(net, x, target=t).attributions
    virtual = lrp(net, x, target=dual).attributions
    clrp = cnnlens.explain(net, x, "clrp", target=t)
    torch.testing.assert_close(clrp.attributions, (target - virtual).clamp(min=0), rtol=1e-5, atol=1e-7)
    assert clrp.delta is None and (clrp.attributions >= 0).all() and clrp.attributions.sum() > 0


def test_layer_lrp_is_activation_times_gradient_under_lrp0_and_sums_to_the_score() -> None:
    net = residual_cnn("module")
    x = inputs()
    store: list[T] = []
    handle = net.head.register_forward_hook(lambda _m, _a, out: store.append(out))
    try:
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        score = out.gather(1, out.argmax(1, keepdim=True))[:, 0]
        (g,) = torch.autograd.grad(score.sum(), store[0])
    finally:
        handle.remove()
    e = cnnlens.explain(net, x, "layer_lrp", layer="head", composite=ALL, **TINY)
    expected = store[0].detach() * g
    assert e.attributions.shape == expected.shape == (3, 8, 4, 4)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert e.info["layer"] == "head"
    torch.testing.assert_close(e.info["activations"], store[0].detach())
    bias_free = without_biases(residual_cnn("module"))
    e = cnnlens.explain(bias_free, x, "layer_lrp", layer=bias_free.b2c2, composite="epsilon", zero_bias=True, **TINY)
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), input_x_gradient(bias_free, x)[1], rtol=1e-4, atol=0)


def test_functional_model_and_batches_give_the_same_relevance() -> None:
    net = residual_cnn("functional")
    x = inputs(4)
    whole = lrp(net, x, composite="epsilon_gamma_box", bounds=(-3.0, 3.0))
    chunked = lrp(Functional(net), x, composite="epsilon_gamma_box", bounds=(-3.0, 3.0), batch_size=3)
    torch.testing.assert_close(chunked.attributions, whole.attributions, rtol=1e-5, atol=1e-7)
