"""Bad input gets a clear error naming the problem, never a trace from deep inside."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens import CnnlensError
from cnnlens.attribution import Method, register


def _net(k: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, k)
    )


class _Wrapped(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net, self.kind = _net(), kind

    def forward(self, x: torch.Tensor):
        out = self.net(x)
        if self.kind == "tuple":
            return out, out
        if self.kind == "dict":
            return {"logits": out}
        if self.kind == "nan":
            return out * float("nan")
        return out.unsqueeze(1)  # 3-D


X = torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize(
    ("inputs", "phrase"),
    [
        (torch.randn(3, 8, 8), "unsqueeze"),
        (torch.randn(2, 3, 8), "(B, C, H, W)"),
        (torch.randn(2, 1, 8, 8), "1 channels but the model's first convolution expects 3"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "float tensor"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.float64), "torch.float64 but the model's parameters are torch.float32"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.zeros(0, 3, 8, 8), "empty"),
        ("cat.png", "Classifier"),
    ],
)
def test_bad_inputs(inputs, phrase: str) -> None:
    with pytest.raises(CnnlensError, match=re.escape(phrase)):
        cnnlens.explain(_net(), inputs, "saliency")


@pytest.mark.parametrize(
    ("target", "phrase"),
    [
        (4, "out of range: the model has 4 classes"),
        (-1, "out of range"),
        ([0, 1, 2], "3 entries but there are 2 images"),
        (1.5, "must be an int"),
        (lambda logits: logits, "one score per row"),
    ],
)
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "deeplift"])
def test_bad_targets(target, phrase: str, method: str) -> None:
    with pytest.raises(CnnlensError, match=re.escape(phrase)):
        cnnlens.explain(_net(), X, method, target=target)


@pytest.mark.parametrize(
    ("kind", "phrase"), [("tuple", "returned a tuple"), ("dict", "returned a dict"), ("nan", "NaN"), ("3d", "shape")]
)
def test_bad_model_outputs(kind: str, phrase: str) -> None:
    with pytest.raises(CnnlensError, match=phrase):
        cnnlens.explain(_Wrapped(kind), X, "saliency")


def test_unknown_method_suggests_a_close_name() -> None:
    with pytest.raises(CnnlensError, match="Did you mean integrated_gradients"):
        cnnlens.explain(_net(), X, "integrated_gradient")


def test_unknown_option_lists_the_options() -> None:
    with pytest.raises(CnnlensError, match="no option 'step'.*steps"):
        cnnlens.explain(_net(), X, "integrated_gradients", step=3)


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"quadrature": "simpson"}, "quadrature must be one of gausslegendre"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"tolerance": -1}, "tolerance"),
        ({"baseline": torch.zeros(5, 3, 7, 7)}, "does not fit"),
        ({"baseline": "purple"}, "unknown baseline"),
        ({"baseline": "black"}, "needs the model's normalization"),
        ({"smooth": "smoothgrads"}, "smooth must be one of"),
    ],
)
def test_bad_options(options: dict, phrase: str) -> None:
    with pytest.raises(CnnlensError, match=phrase):
        cnnlens.explain(_net(), X, "integrated_gradients", **options)


@pytest.mark.parametrize(("method", "option"), [("saliency", "abs"), ("guided_backprop", "generalize")])
def test_switch_options_must_be_bools(method: str, option: str) -> None:
    with pytest.raises(CnnlensError, match=f"{method}: option {option} must be True or False; got 'no'"):
        cnnlens.explain(_net(), X, method, **{option: "no"})  # a non-empty string would be truthy


@pytest.mark.parametrize("window", [3.0, None, "4", (2, 0), (2, 2, 2)])
def test_occlusion_window_must_be_positive_ints(window) -> None:
    with pytest.raises(CnnlensError, match=re.escape("window must be a positive int or (height, width); got")):
        cnnlens.explain(_net(), X, "occlusion", window=window)


def test_baseline_for_a_method_without_one() -> None:
    with pytest.raises(CnnlensError, match="does not use a baseline"):
        cnnlens.explain(_net(), X, "saliency", baseline=torch.zeros_like(X))


def test_bad_batch_size() -> None:
    with pytest.raises(CnnlensError, match="batch_size"):
        cnnlens.explain(_net(), X, "saliency", batch_size=0)


def test_duplicate_method_name_raises() -> None:
    class Again(Method):
        name = "saliency"
        category = "gradient"

    with pytest.raises(CnnlensError, match="already registered"):
        register(Again)


def test_not_a_model() -> None:
    with pytest.raises(CnnlensError, match="nn.Module"):
        cnnlens.explain(lambda x: x, X, "saliency")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace: the users' TorchScript files still exist
def test_torchscript_models_refuse_rules_and_hooks_but_keep_plain_gradients() -> None:
    """Backward rules and forward hooks cannot reach TorchScript code: a rule-based method would silently
    return another method's map, so it must refuse; plain gradients still equal the nn.Module's."""
    from _nets import inputs, residual_cnn

    net = residual_cnn()
    x = inputs(2)
    scripted = torch.jit.trace(net, x)
    wrapped = torch.nn.Sequential(torch.jit.trace(net, x))  # scripted code inside an ordinary module
    for model in (scripted, wrapped):
        for method in ("guided_backprop", "deconvnet", "deeplift"):
            with pytest.raises(cnnlens.UnsupportedOperationError, match=f"{method} changes the backward.*TorchScript"):
                cnnlens.explain(model, x, method)
        with pytest.raises(cnnlens.UnsupportedOperationError, match="TorchScript"):
            cnnlens.explain(model, x, "deeplift_shap", baseline=torch.zeros(2, *x.shape[1:]))
    layer = "b2c2"
    for method in ("grad_cam", "guided_grad_cam", "score_cam"):
        with pytest.raises(CnnlensError, match="is TorchScript code, which takes no forward hooks"):
            cnnlens.explain(scripted, x, method, layer=layer)
    for method in ("saliency", "integrated_gradients"):
        torch.testing.assert_close(
            cnnlens.explain(scripted, x, method).attributions, cnnlens.explain(net, x, method).attributions
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_on_torchscript_every_method_refuses_or_equals_the_eager_model() -> None:
    """Exactly the methods with their own backward rule (and every CAM: hooks) refuse a scripted model; every other
    gradient method gives the eager model's maps to the last bit (a silent other method would fail here)."""
    from _tiny_models import TinyCNN

    torch.manual_seed(0)
    net = TinyCNN(num_classes=3).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    refused = []
    for info in cnnlens.methods("gradient"):
        try:
            theirs = cnnlens.explain(scripted, x, info.name).attributions
        except cnnlens.UnsupportedOperationError as e:
            assert "cannot reach inside TorchScript" in str(e)
            refused.append(info.name)
            continue
        assert torch.equal(theirs, cnnlens.explain(net, x, info.name).attributions), info.name
    assert sorted(refused) == ["deconvnet", "deeplift", "deeplift_shap", "guided_backprop"]
    for info in cnnlens.methods("cam"):
        with pytest.raises(CnnlensError, match="TorchScript"):
            cnnlens.explain(scripted, x, info.name, **({"layer": "features.0"} if "layer" in info.params else {}))
    for name in [m.name for m in cnnlens.methods("propagation")] + ["layer_lrp"]:  # relevance rules: a mode too
        with pytest.raises(cnnlens.UnsupportedOperationError, match="cannot reach inside TorchScript"):
            cnnlens.explain(scripted, x, name, **({"layer": "features.0"} if name == "layer_lrp" else {}))


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"batch_size": 0}, "batch_size must be a positive int or None"),
        ({"batch_size": "4"}, "batch_size must be a positive int or None"),
        ({"batch_size": True}, "batch_size must be a positive int or None"),
        ({"seed": "a"}, "seed must be an int; got 'a'"),
        ({"seed": 1.5}, "seed must be an int; got 1.5"),
        ({"seed": None}, "seed must be an int; got None"),
    ],
)
def test_explain_checks_its_run_options(kwargs: dict, phrase: str) -> None:
    from _nets import inputs, residual_cnn

    with pytest.raises(CnnlensError, match=re.escape(phrase)):
        cnnlens.explain(residual_cnn(), inputs(1), "saliency", **kwargs)
