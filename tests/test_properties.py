"""Properties over the whole registry, on a small net (issue 26): what each method declares, checked; and the cases
every method must survive (a negative score, a one-logit model, an all-zero layer, a constant image).

Each method declares the invariances its definition guarantees (``Method.invariances``, names from
``cnnlens.attribution.INVARIANCES``); the tests of an invariance run over exactly the methods that declare it,
so a new method is checked by what it declares:

* ``shift``: the same constant added to every logit (the last layer's bias) leaves the map unchanged;
* ``negation``: every logit negated (the last layer's weight and bias) negates the map;
* ``unsigned``: every logit negated leaves the map unchanged (magnitudes, or no class score explained);
* ``baseline_zero``: an image equal to its baseline gets an all-zero map;
* ``batch``: a batch's maps are those of its images one by one. Methods that draw random samples (expected
  gradients, Shapley sampling, KernelSHAP, LIME) share the run's generator across the batch, so an image's draws
  depend on the images before it: for them only the same batch with the same seed gives the same maps (checked
  here), and a different seed other maps.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.attribution import INVARIANCES, get_method, methods

pytestmark = pytest.mark.usefixtures("one_thread")

C, H, W = 3, 10, 10
INFO = {m.name: m for m in methods()}
NAMES = list(INFO)
X = torch.randn(3, C, H, W, generator=torch.Generator().manual_seed(2))


def declaring(invariance: str) -> list[str]:
    """The methods that declare ``invariance``: the ones its test runs over."""
    return [n for n in NAMES if invariance in get_method(n).invariances]


class PropNet(nn.Module):
    """conv-BN-ReLU, conv-ReLU, global average pooling, linear: every method applies (CAM included)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(C, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.fc(self.gap(h).flatten(1))


def net(classes: int = 4, logits: str = "plain") -> PropNet:
    """The same weights every time; ``logits``: ``"shifted"`` (+3 on every logit) or ``"negated"``."""
    torch.manual_seed(0)
    m = PropNet(classes)
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-0.3, 0.3)
        m.bn1.running_var.uniform_(0.5, 1.5)
        m.conv2.bias.add_(0.3)
        if logits == "shifted":
            m.fc.bias.add_(3.0)
        elif logits == "negated":
            m.fc.weight.neg_()
            m.fc.bias.neg_()
    return m.eval()


TARGETS = net()(X).argmax(1).detach()


def options(name: str) -> dict:
    """Cheap options: few steps and samples, a 3 x 3 grid of segments, the layer conv2 (CAM: its pooled output)."""
    info, opts = INFO[name], {}
    if "steps" in info.params:
        opts["steps"] = 4
    if "samples" in info.params:
        opts["samples"] = 20 if name == "kernel_shap" else 8
    if "mask" in info.params and info.category != "layer":
        opts["mask"] = "grid:4"
    if name == "occlusion":
        opts.update(window=4, stride=3)
    if name == "rise":
        opts["cells"] = 3
    if name == "layer_conductance":
        opts["points"] = 4
    if "layer" in info.params:
        opts["layer"] = "act2" if name == "cam" else "conv2"
    if info.category == "neuron":
        opts["neuron"] = 1
    return opts


def explain(name: str, model: nn.Module, x: torch.Tensor, baseline: torch.Tensor | None = None, seed: int = 3,
            targets: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The method's map of ``x`` (class methods: for ``TARGETS``); distribution methods get two small baselines."""
    info = INFO[name]
    if baseline is None and info.needs_baseline == "distribution":
        baseline = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(5)) * 0.1
    target = None if info.category == "neuron" and name != "neuron_conductance" else targets
    if target is None and name == "neuron_conductance":
        target = TARGETS[: x.shape[0]]
    e = cnnlens.explain(model, x, name, target=target, baseline=baseline, seed=seed, progress=False, **options(name))
    return e.attributions


@functools.cache
def plain_map(name: str) -> torch.Tensor:
    return explain(name, net(), X, targets=TARGETS)


def assert_same_map(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    scale = float(want.abs().max())
    assert scale > 0, "an all-zero map cannot show the property"
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale, msg=lambda m: f"{what}: {m}")


# ---- the declarations ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_method_declares_its_invariances_itself(name: str) -> None:
    cls = get_method(name)
    assert "invariances" in vars(cls), f"{cls.__name__} must set invariances itself (not inherit them)"
    assert isinstance(cls.invariances, frozenset) and cls.invariances <= set(INVARIANCES)


def test_the_declarations_choose_what_is_tested() -> None:
    tested = {
        "shift": test_shift,
        "negation": test_negation,
        "unsigned": test_unsigned,
        "baseline_zero": test_image_equal_to_its_baseline,
        "batch": test_batch_equals_images_one_by_one,
    }
    assert set(tested) == set(INVARIANCES)
    for invariance, test in tested.items():
        (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
        assert list(mark.args[1]) == declaring(invariance)
    assert "ablation_cam" not in declaring("shift") and "internal_influence" not in declaring("baseline_zero")
    assert set(declaring("negation")).isdisjoint(declaring("unsigned"))


@pytest.mark.parametrize("name", ["ablation_cam", "rise", "sglrp"])
def test_a_method_not_declaring_shift_is_indeed_not_shift_invariant(name: str) -> None:
    """The check can fail: Ablation-CAM divides the drop by |y|, RISE weights masks by the score itself, SGLRP's
    epsilon rule divides by the shifted logits."""
    got = explain(name, net(logits="shifted"), X, targets=TARGETS)
    assert not torch.allclose(got, plain_map(name), rtol=1e-4, atol=1e-4 * float(plain_map(name).abs().max()))


# ---- the invariances, each over the methods that declare it ----------------------------------------------------
@pytest.mark.parametrize("name", declaring("shift"))
def test_shift(name: str) -> None:
    assert_same_map(explain(name, net(logits="shifted"), X, targets=TARGETS), plain_map(name), "logits + 3")


@pytest.mark.parametrize("name", declaring("negation"))
def test_negation(name: str) -> None:
    got = explain(name, net(logits="negated"), X, targets=TARGETS)
    assert_same_map(-got, plain_map(name), "negated logits")


@pytest.mark.parametrize("name", declaring("unsigned"))
def test_unsigned(name: str) -> None:
    assert_same_map(explain(name, net(logits="negated"), X, targets=TARGETS), plain_map(name), "negated logits")


@pytest.mark.parametrize("name", declaring("baseline_zero"))
def test_image_equal_to_its_baseline(name: str) -> None:
    x = X[:1]
    baseline = x.repeat(2, 1, 1, 1) if INFO[name].needs_baseline == "distribution" else x.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error", cnnlens.CnnlensWarning)  # nothing to warn about: f(x) - f(baseline) = 0
        got = explain(name, net(), x, baseline=baseline, targets=TARGETS[:1])
    scale = float(plain_map(name)[:1].abs().max())
    assert scale > 0
    assert float(got.abs().max()) <= 1e-4 * scale, f"the map of an image equal to its baseline: {got.abs().max()}"


@pytest.mark.parametrize("name", declaring("batch"))
def test_batch_equals_images_one_by_one(name: str) -> None:
    alone = torch.cat([explain(name, net(), X[i : i + 1], targets=TARGETS[i : i + 1]) for i in range(X.shape[0])])
    assert_same_map(alone, plain_map(name), "images one by one")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in declaring("batch")])
def test_a_method_with_random_draws_repeats_itself_with_the_same_seed_only(name: str) -> None:
    again = explain(name, net(), X, targets=TARGETS)
    torch.testing.assert_close(again, plain_map(name), rtol=0, atol=0)
    if name not in ("ablation_cam", "sglrp", "clrp", "feature_permutation"):  # no draws there, or all of them used
        other = explain(name, net(), X, targets=TARGETS, seed=4)
        assert not torch.equal(other, plain_map(name)), "the seed is not used"


# ---- cases every method must survive ---------------------------------------------------------------------------
def _survives(name: str, model: nn.Module, x: torch.Tensor, refusals: bool = False) -> tuple[torch.Tensor | None, list]:
    """The map (``None`` for a clear refusal where ``refusals``) and the cnnlens warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got: torch.Tensor | None = explain(name, model, x, targets=None)
        except cnnlens.CnnlensError:
            if not refusals:
                raise
            got = None
    if got is not None:
        assert torch.isfinite(got).all(), "a map with inf or NaN"
    return got, [w for w in caught if issubclass(w.category, cnnlens.CnnlensWarning)]


@pytest.mark.parametrize("name", NAMES)
def test_a_negative_explained_score_gives_a_finite_map(name: str) -> None:
    model = net(logits="negated")
    scores = model(X).gather(1, TARGETS[:, None])
    assert (scores < 0).all()  # the classes of the plain net score negative here
    got = explain(name, model, X, targets=TARGETS)
    assert torch.isfinite(got).all() and got.shape == plain_map(name).shape


@pytest.mark.parametrize("name", NAMES)
def test_a_one_logit_model_gives_a_finite_map_or_a_clear_refusal(name: str) -> None:
    _survives(name, net(classes=1), X[:2], refusals=True)


@pytest.mark.parametrize("name", NAMES)
def test_a_constant_image_gives_a_finite_map(name: str) -> None:
    x = torch.full((2 if name == "feature_permutation" else 1, C, H, W), 0.5)
    got, _ = _survives(name, net(), x)
    assert got is not None


LAYERED = [n for n in NAMES if INFO[n].category in ("cam", "layer", "neuron") and "layer" in INFO[n].params]


@pytest.mark.parametrize("name", LAYERED)
def test_an_all_zero_layer_gives_a_zero_map_or_a_warning(name: str) -> None:
    model = net()
    with torch.no_grad():
        model.conv2.weight.zero_()
        model.conv2.bias.zero_()  # conv2 and act2 output zeros for every image
    got, warned = _survives(name, model, X[:2], refusals=name in ("ablation_cam", "score_cam"))
    if got is not None and not warned:
        assert float(got.abs().max()) == 0.0, "a map drawn from an all-zero layer, with no warning"
