"""The metric pipeline: every way of naming a method, option and input errors, the model left unchanged, passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens
from _nets import inputs, residual_cnn
from cnnlens import CnnlensError
from cnnlens.attribution import get_method
from cnnlens.quality import Score, get_metric, metrics, score
from test_contract import _assert_unchanged, _model, _snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
MINE = ["infidelity", "sensitivity_max", "completeness", "deletion", "insertion", "road", "pointing_game"]
ALL = [*MINE, "randomization_check", "class_discrimination", "detail"]


class Counting(nn.Module):
    """Counts the rows of every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x: T) -> T:
        self.rows += x.shape[0]
        return self.net(x)


def test_every_way_of_giving_the_method_agrees() -> None:
    net, x = residual_cnn(), inputs(2)
    ref = score("deletion", net, x, "saliency", steps=6)
    assert isinstance(ref, Score) and ref.method == "saliency" and ref.values.shape == (2,)
    e = cnnlens.explain(net, x, "saliency")
    ways = [
        get_method("saliency"),
        get_method("saliency")(),
        e,
        lambda m, inp, t: cnnlens.explain(m, inp, "saliency", target=t).attributions,
    ]
    for way in ways:
        s = score("deletion", net, x, way, steps=6)
        torch.testing.assert_close(s.values, ref.values, rtol=0, atol=0)
        torch.testing.assert_close(s.curve, ref.curve, rtol=0, atol=0)
    # the metric as a class or an instance
    assert torch.equal(score(get_metric("deletion"), net, x, "saliency", steps=6).values, ref.values)
    assert torch.equal(score(get_metric("deletion")(steps=6), net, x, "saliency").values, ref.values)
    # method options reach the method
    ig2 = score("deletion", net, x, "integrated_gradients", method_options={"steps": 2}, steps=6)
    ig9 = score("deletion", net, x, "integrated_gradients", method_options={"steps": 9}, steps=6)
    assert not torch.equal(ig2.curve, ig9.curve)


def test_errors() -> None:
    net, x = residual_cnn(), inputs(2)
    with pytest.raises(CnnlensError, match="Did you mean deletion"):
        score("deletoin", net, x, "saliency")
    with pytest.raises(CnnlensError, match="no option 'stpes'.*steps"):
        score("deletion", net, x, "saliency", stpes=3)
    with pytest.raises(CnnlensError, match="constructing"):
        score(get_metric("deletion")(), net, x, "saliency", steps=3)
    e = cnnlens.explain(net, x, "saliency")
    with pytest.raises(CnnlensError, match="not a finished Explanation"):
        score("sensitivity_max", net, x, e)
    with pytest.raises(CnnlensError, match="method options cannot"):
        score("deletion", net, x, e, method_options={"steps": 3})
    with pytest.raises(CnnlensError, match=r"returned shape \(2, 3, 4, 4\)"):
        score("deletion", net, x, lambda m, inp, t: torch.zeros(2, 3, 4, 4))
    with pytest.raises(CnnlensError, match="not a tensor"):
        score("deletion", net, x, lambda m, inp, t: inp.numpy())
    with pytest.raises(CnnlensError, match="Explanation has attributions of shape"):
        score("deletion", net, x[:1], e)
    with pytest.raises(CnnlensError, match="explains classes"):
        score("deletion", net, x, e, target=(e.target + 1) % 5)
    with pytest.raises(CnnlensError, match="not a callable"):
        score("deletion", net, x, "saliency", target=lambda logits: logits[:, 0])
    with pytest.raises(CnnlensError, match="method must be"):
        score("deletion", net, x, 3)
    with pytest.raises(CnnlensError, match="metric must be a metric name"):
        score(3, net, x, "saliency")
    e_fixed = cnnlens.explain(net, x, "saliency")  # a finished Explanation: the method never checks these
    for bad, message in [
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"batch_size": "4"}, "batch_size must be a positive int"),
        ({"batch_size": True}, "batch_size must be a positive int"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"seed": None}, "seed must be an int"),
    ]:
        with pytest.raises(CnnlensError, match=message):
            score("deletion", net, x, e_fixed, steps=3, **bad)
    with pytest.raises(CnnlensError, match="method_options must be a dict"):
        score("deletion", net, x, "saliency", method_options=["abs"])


BAD_OPTIONS = [
    ("infidelity", "samples", 2.0, "int >= 1"),
    ("infidelity", "std", "0.1", r"number in \[0, inf\)"),
    ("infidelity", "std", float("inf"), r"number in \[0, inf\)"),
    ("infidelity", "normalize", 1, "True or False"),
    ("infidelity", "perturbation", "gauss", "callable"),
    ("sensitivity_max", "samples", True, "int >= 1"),
    ("sensitivity_max", "radius", None, r"number in \[0, inf\)"),
    ("sensitivity_max", "radius", -0.1, r"number in \[0, inf\)"),
    ("deletion", "steps", 3.0, "int >= 1"),
    ("deletion", "sign", None, "one of positive, absolute"),
    ("insertion", "output", ["logit"], "one of probability, logit"),
    ("road", "steps", 1, "int >= 2"),
    ("road", "noise", float("nan"), r"number in \[0, inf\)"),
    ("pointing_game", "tolerance", "15", r"number in \[0, inf\)"),
    ("randomization_check", "steps", 2.5, "int >= 1"),
    ("randomization_check", "absolute", "no", "True or False"),
    ("class_discrimination", "absolute", "yes", "True or False"),
    ("detail", "absolute", None, "True or False"),
    ("detail", "fraction", "0.5", r"number in \(0, 1\)"),
]


@pytest.mark.parametrize(("name", "option", "value", "message"), BAD_OPTIONS)
def test_wrong_option_types_are_named_before_any_work(name: str, option: str, value: object, message: str) -> None:
    with pytest.raises(CnnlensError, match=f"{option} must be .*{message}"):
        get_metric(name)(**{option: value})  # at construction: no model, no pass


def test_every_metric_has_its_options_checked() -> None:
    assert {m.name for m in metrics() if m.params} == {n for n, *_ in BAD_OPTIONS}


def test_pointing_game_masks_that_are_not_an_array() -> None:
    with pytest.raises(CnnlensError, match="masks must be a bool tensor or array"):
        score("pointing_game", residual_cnn(), inputs(2), "saliency", masks="object")


def test_registry_lists_these_metrics_with_their_direction() -> None:
    info = {m.name: m for m in metrics()}
    assert set(MINE) <= set(info)
    assert {n for n in MINE if info[n].higher_is_better} == {"insertion", "road", "pointing_game"}
    assert {n for n in MINE if info[n].rerun} == {"sensitivity_max"}
    assert {n for n in MINE if info[n].kind == "curve"} == {"deletion", "insertion", "road"}
    assert all(info[n].summary and "\n" not in info[n].summary for n in MINE)


def _options(name: str) -> dict:
    return {
        "infidelity": {"samples": 3},
        "sensitivity_max": {"samples": 2},
        "deletion": {"steps": 4},
        "insertion": {"steps": 4},
        "road": {"steps": 3},
        "pointing_game": {"boxes": [(0, 0, 5, 5)] * 2},
    }.get(name, {})


@pytest.mark.parametrize("name", ALL)
def test_model_left_unchanged(name: str) -> None:
    model = _model()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    before = _snapshot(model)
    method = "integrated_gradients" if name == "completeness" else "saliency"
    opts = {"steps": 3} if method == "integrated_gradients" else {}
    s = score(name, model, x, method, batch_size=3, method_options=opts, **_options(name))
    _assert_unchanged(model, before)
    assert torch.isfinite(s.values).all()
    model.boom.calls, model.boom.fail_at = 0, 4  # the model fails midway through the metric
    with pytest.raises(RuntimeError, match="boom"):
        score(name, model, x, method, batch_size=1, method_options=opts, **_options(name))
    model.boom.fail_at = 0
    _assert_unchanged(model, before)


@pytest.mark.parametrize(
    ("name", "method", "opts"),
    [
        ("deletion", "saliency", {"steps": 5}),
        ("insertion", "integrated_gradients", {"steps": 3}),
        ("infidelity", "saliency", {"samples": 4}),
        ("sensitivity_max", "saliency", {"samples": 3}),
        ("road", "grad_cam", {"steps": 2}),
    ],
)
def test_passes_are_counted(name: str, method: str, opts: dict) -> None:
    net, x = Counting(residual_cnn()), inputs(2)
    s = score(name, net, x, method, batch_size=4, **opts)
    assert s.passes == net.rows > 2
