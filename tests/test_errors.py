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
        ({"quadrature": "simpson"}, "unknown quadrature"),
        ({"steps": 0}, "positive int"),
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
    with pytest.raises(CnnlensError, match=re.escape("window must be a positive int or (height, width) of positive")):
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
