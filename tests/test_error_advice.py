"""Every error of the attribution and quality packages that suggests a fix: the fix, applied as the message says,
works. Each case is (the failing call, what the message must say, the call with the message's fix).

Errors whose advice is tested elsewhere: guided backprop / deconvnet on activations they do not cover
(test_rule_spellings.py), a forward that cuts the gradient and batch statistics (test_user_models.py).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import cnnlens
from _tiny_models import TinyCNN
from cnnlens import CnnlensError
from cnnlens.attribution import Method, explain, register
from cnnlens.attribution.gradient import Saliency
from cnnlens.attribution.perturbation import inpaint_baseline
from cnnlens.models import Preprocessing, SelectOutput
from cnnlens.quality import score, scorecard
from cnnlens.quality._sanity import RandomizationCheck

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]
T = torch.Tensor


def _net() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN(num_classes=3).eval()


NET = _net()
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
PREP = Preprocessing(input_size=(16, 16), resize=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
CLF = cnnlens.load_model(_net(), preprocessing=PREP)
PHOTO = Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8))


class Outputs(nn.Module):
    """Returns a dict, a tuple, or an object with ``.logits``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net, self.kind = _net(), kind

    def forward(self, x: T):
        out = self.net(x)
        if self.kind == "dict":
            return {"features": x.mean((2, 3)), "logits": out}
        if self.kind == "tuple":
            return x.mean(1), out

        class Output:
            logits = out

        return Output()


class OOMAbove(nn.Module):
    """Runs out of memory on batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.net, self.limit = _net(), limit

    def forward(self, x: T) -> T:
        if x.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


class OwnConv(nn.Module):
    """Convolves with its own weight (no nn.Conv2d): the default CAM layer cannot be found, layer= works."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.block = nn.Module()
        self.block.weight = nn.Parameter(torch.randn(4, 3, 3, 3) * 0.3)
        self.block.forward = lambda x: F.conv2d(x, self.block.weight, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        return self.fc(torch.relu(self.block(x)).mean((2, 3)))


class PooledByMean(nn.Module):
    """Conv, conv, an nn.ReLU module, x.mean((2, 3)) (no pooling module), linear: CAM finds the pooled map."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu, self.fc = nn.ReLU(), nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        return self.fc(self.relu(self.conv2(self.conv(x))).mean((2, 3)))


def _hidden() -> nn.Module:
    """Global average pooling, then a head with a hidden layer: CAM does not apply."""
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4), nn.ReLU(),
        nn.Linear(4, 3),
    )  # fmt: skip


class Keeps(nn.Module):
    """Stores a non-leaf tensor as an attribute (not deep-copyable); ``fixed``: stores it detached."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.net = _net()
        scale = nn.Parameter(torch.ones(1)) * 2
        self.scale = scale.detach() if fixed else scale

    def forward(self, x: T) -> T:
        return self.net(x) * self.scale


def _noisy(x: T, g: torch.Generator) -> T:
    return x + 0.01 * torch.randn(x.shape, generator=g)


@functools.cache
def _scripted() -> torch.jit.ScriptModule:
    return torch.jit.script(_net())


def _from_state_dict() -> TinyCNN:
    net = TinyCNN(num_classes=3)
    net.load_state_dict(_scripted().state_dict())  # "load its state dict into its class"
    return net.eval()


def _explanation() -> cnnlens.Explanation:
    return explain(NET, X, "saliency", target=[0, 1])


CASES: list[tuple[str, Callable, str, Callable]] = [
    # ---- explain: methods, options, run options ------------------------------------------------------------
    ("options to a method object", lambda: explain(NET, X, Saliency(), abs=False),
     "give options when constructing the method object", lambda: explain(NET, X, Saliency(abs=False))),
    ("baseline for a method without one", lambda: explain(NET, X, "saliency", baseline=0.0),
     "remove baseline=", lambda: explain(NET, X, "saliency")),
    ("batch size", lambda: explain(NET, X, "saliency", batch_size=0),
     "batch_size must be a positive int or None", lambda: explain(NET, X, "saliency", batch_size=None)),
    ("not a model", lambda: explain(lambda t: NET(t), X, "saliency"),
     "torch.nn.Module returning logits or a cnnlens Classifier", lambda: explain(NET, X, "saliency")),
    ("images without preprocessing", lambda: explain(NET, [PHOTO], "saliency"),
     "Images .* are accepted when the model is a cnnlens Classifier", lambda: explain(CLF, [PHOTO], "saliency")),
    ("one image without a batch axis", lambda: explain(NET, X[0], "saliency"),
     re.escape("use x.unsqueeze(0)"), lambda: explain(NET, X[0].unsqueeze(0), "saliency")),
    ("integer inputs", lambda: explain(NET, (X * 50).to(torch.uint8), "saliency"),
     re.escape("x.float()"), lambda: explain(NET, (X * 50).to(torch.uint8).float(), "saliency")),
    ("inputs on another device", lambda: explain(NET, X.to("meta"), "saliency"),
     "inputs are on meta but the model is on cpu; move one of them", lambda: explain(NET, X.to("cpu"), "saliency")),
    ("inputs of another dtype", lambda: explain(NET, X.double(), "saliency"),
     re.escape("x.to(torch.float32)"), lambda: explain(NET, X.double().to(torch.float32), "saliency")),
    ("float32 inputs to a float16 model", lambda: explain(copy.deepcopy(NET).half(), X, "saliency"),
     re.escape("x.to(torch.float16)"), lambda: explain(copy.deepcopy(NET).half(), X.to(torch.float16), "saliency")),
    ("unknown method", lambda: explain(NET, X, "integrated_gradient"),
     "Did you mean integrated_gradients", lambda: explain(NET, X, "integrated_gradients", steps=4)),
    ("unknown option", lambda: explain(NET, X, "integrated_gradients", step=4),
     "no option 'step'.*steps", lambda: explain(NET, X, "integrated_gradients", steps=4)),
    # ---- targets and model outputs -------------------------------------------------------------------------
    ("targets per image", lambda: explain(NET, X, "saliency", target=[0, 1, 2]),
     "give one per image", lambda: explain(NET, X, "saliency", target=[0, 1])),
    ("callable target shape", lambda: explain(NET, X, "saliency", target=lambda lg: lg),
     "one score per row", lambda: explain(NET, X, "saliency", target=lambda lg: lg[:, 0])),
    ("a dict of outputs", lambda: explain(Outputs("dict"), X, "saliency"),
     re.escape("SelectOutput(model, 'logits')"), lambda: explain(SelectOutput(Outputs("dict"), "logits"), X, "grad_cam")),
    ("a tuple of outputs", lambda: explain(Outputs("tuple"), X, "saliency"),
     re.escape("SelectOutput(model, 1)"), lambda: explain(SelectOutput(Outputs("tuple"), 1), X, "saliency")),
    ("an output object", lambda: explain(Outputs("object"), X, "saliency"),
     re.escape("SelectOutput(model, 'logits')"), lambda: explain(SelectOutput(Outputs("object"), "logits"), X, "saliency")),
    ("out of memory with a fixed batch size", lambda: explain(OOMAbove(2), X, "integrated_gradients", batch_size=8),
     re.escape("pass a smaller batch_size (or batch_size=None"),
     lambda: (explain(OOMAbove(2), X, "integrated_gradients", batch_size=2),
              explain(OOMAbove(2), X, "integrated_gradients", batch_size=None))),
    # ---- baselines -----------------------------------------------------------------------------------------
    ("a named baseline without normalization", lambda: explain(NET, X, "integrated_gradients", baseline="black"),
     "pass a cnnlens Classifier .* or give the baseline as a tensor",
     lambda: (explain(CLF, X, "integrated_gradients", baseline="black"),
              explain(NET, X, "integrated_gradients", baseline=PREP.pixel_value((0, 0, 0)).view(3, 1, 1).expand(3, 16, 16)))),
    ("inpainting for a single-baseline method", lambda: explain(NET, X, "integrated_gradients", baseline="inpaint"),
     re.escape("baseline=inpaint_baseline(inputs, mask)"),
     lambda: explain(NET, X, "integrated_gradients", baseline=inpaint_baseline(X, "grid:8"))),
    ("inpainting for a baseline distribution", lambda: explain(NET, X, "deeplift_shap", baseline="inpaint"),
     re.escape("inpaint_baseline(inputs, mask)[:, None]"),
     lambda: explain(NET, X, "deeplift_shap", baseline=inpaint_baseline(X, "grid:8")[:, None])),
    ("unknown baseline", lambda: explain(NET, X, "integrated_gradients", baseline="gray"),
     "use one of zero, black", lambda: explain(NET, X, "integrated_gradients", baseline="blur")),
    ("baseline shape", lambda: explain(NET, X, "integrated_gradients", baseline=torch.zeros(3, 8, 8)),
     re.escape("give (C, H, W), (1, C, H, W) or one per input"),
     lambda: explain(NET, X, "integrated_gradients", baseline=torch.zeros(3, 16, 16))),
    ("baseline distribution shape", lambda: explain(NET, X, "gradient_shap", baseline=torch.zeros(4, 3, 8, 8)),
     re.escape("give (K, 3, 16, 16) shared by all inputs"),
     lambda: explain(NET, X, "gradient_shap", baseline=torch.zeros(4, 3, 16, 16))),
    ("empty baseline list", lambda: explain(NET, X, "deeplift_shap", baseline=[]),
     "give at least one baseline", lambda: explain(NET, X, "deeplift_shap", baseline=[0.0])),
    # ---- feature masks -------------------------------------------------------------------------------------
    ("a mask of another size", lambda: explain(NET, X, "feature_ablation", mask=torch.zeros(8, 8, dtype=torch.long)),
     re.escape("give (16, 16)"), lambda: explain(NET, X, "feature_ablation", mask=torch.zeros(16, 16, dtype=torch.long))),
    ("one mask per image", lambda: explain(NET, X, "feature_ablation", mask=["grid:8"]),
     "needs one per image", lambda: explain(NET, X, "feature_ablation", mask=["grid:8", "grid:4"])),
    ("unknown mask", lambda: explain(NET, X, "feature_ablation", mask="grids:8"),
     "use one of grid, slic", lambda: explain(NET, X, "feature_ablation", mask="grid:8")),
    ("quickshift on other channels", lambda: explain(_gray(), X[:, :1], "feature_ablation", mask="quickshift"),
     "use slic or felzenszwalb", lambda: explain(_gray(), X[:, :1], "feature_ablation", mask="slic:8")),
    # ---- CAMs ----------------------------------------------------------------------------------------------
    ("a CAM layer after global pooling", lambda: explain(NET, X, "grad_cam", layer="pool"),
     "choose a convolutional layer before global pooling", lambda: explain(NET, X, "grad_cam", layer="features.2")),
    ("no default CAM layer", lambda: explain(OwnConv(), X, "grad_cam"),
     re.escape("Give the layer: layer='name'"), lambda: explain(OwnConv(), X, "grad_cam", layer="block")),
    ("CAM at a layer before the pooled one", lambda: explain(PooledByMean(), X, "cam", layer="conv"),
     "leave layer unset to find it.*or use grad_cam",
     lambda: (explain(PooledByMean(), X, "cam"), explain(PooledByMean(), X, "grad_cam", layer="conv"))),
    ("CAM of a head with a hidden layer", lambda: explain(_hidden(), X, "cam"),
     "head has a hidden layer.*Use grad_cam", lambda: explain(_hidden(), X, "grad_cam")),
    ("CAM with a callable target", lambda: explain(NET, X, "cam", target=lambda lg: lg[:, 0]),
     "give class indices as target", lambda: explain(NET, X, "cam", target=0)),
    ("TorchScript and a rule", lambda: explain(_scripted(), X, "guided_backprop"),
     "load its state dict into its class.*or use a method without its own rule",
     lambda: (explain(_from_state_dict(), X, "guided_backprop"), explain(_scripted(), X, "saliency"))),
    ("TorchScript and a CAM", lambda: explain(_scripted(), X, "grad_cam"),
     "load its state dict into its class.*or use a method without hooks",
     lambda: (explain(_from_state_dict(), X, "grad_cam"), explain(_scripted(), X, "integrated_gradients", steps=4))),
    ("TorchScript and FullGrad", lambda: explain(_scripted(), X, "fullgrad"),
     "load its state dict into its class", lambda: explain(_from_state_dict(), X, "fullgrad")),
    # ---- method-specific -----------------------------------------------------------------------------------
    ("a Riemann rule with one step", lambda: explain(NET, X, "integrated_gradients", quadrature="riemann_left", steps=1),
     "needs steps >= 2", lambda: explain(NET, X, "integrated_gradients", quadrature="riemann_left", steps=2)),
    ("feature permutation of one image", lambda: explain(NET, X[:1], "feature_permutation", mask="grid:8"),
     "give at least 2 images", lambda: explain(NET, X, "feature_permutation", mask="grid:8")),
    # ---- score() and metrics -------------------------------------------------------------------------------
    ("options to a metric object", lambda: score(RandomizationCheck(), NET, X, "saliency", steps=2),
     "give options when constructing the metric object", lambda: score(RandomizationCheck(steps=2), NET, X, "saliency")),
    ("method options for a finished explanation",
     lambda: score("deletion", NET, X, _explanation(), target=[0, 1], method_options={"abs": False}),
     "pass the method name",
     lambda: score("deletion", NET, X, "saliency", target=[0, 1], method_options={"abs": False}, steps=4)),
    ("an explanation of other inputs", lambda: score("deletion", NET, X[:1], _explanation(), target=[0]),
     "explain the same inputs, or pass the method name",
     lambda: score("deletion", NET, X[:1], "saliency", target=[0], steps=4)),
    ("an explanation of other classes", lambda: score("deletion", NET, X, _explanation(), target=[2, 2]),
     "pass target= matching the explanation", lambda: score("deletion", NET, X, _explanation(), target=[0, 1], steps=4)),
    ("a metric that re-explains, given an explanation", lambda: score("sensitivity_max", NET, X, _explanation(), target=[0, 1]),
     "needs the method .a name, a Method or a callable",
     lambda: score("sensitivity_max", NET, X, "saliency", target=[0, 1], samples=2)),
    ("a callable target for a metric", lambda: score("deletion", NET, X, "saliency", target=lambda lg: lg[:, 0]),
     "need integer targets", lambda: score("deletion", NET, X, "saliency", target=0, steps=4)),
    ("an explainer of the wrong shape", lambda: score("deletion", NET, X, lambda m, x, t: x[:, 0, :4]),
     re.escape("expected (B, C, H, W) or (B, 1, H, W)"), lambda: score("deletion", NET, X, lambda m, x, t: x[:, :1], steps=4)),
    ("more steps than pixels", lambda: score("deletion", NET, X, "saliency", steps=1000),
     "use steps <= 256", lambda: score("deletion", NET, X, "saliency", steps=256)),
    ("a module that cannot be deep-copied", lambda: score("randomization_check", Keeps(False), X, "saliency", steps=2),
     "make the module deep-copyable", lambda: score("randomization_check", Keeps(True), X, "saliency", steps=2)),
    ("randomization on TorchScript", lambda: score("randomization_check", _scripted(), X, "saliency", steps=2),
     "load its state dict into its class", lambda: score("randomization_check", _from_state_dict(), X, "saliency", steps=2)),
    ("completeness of a method without delta", lambda: score("completeness", NET, X, "saliency"),
     "Methods with a delta: deeplift", lambda: score("completeness", NET, X, "deeplift")),
    ("a perturbation of the wrong shape", lambda: score("infidelity", NET, X, "saliency", perturbation=lambda x, g: x[:1], samples=2),
     "must return a tensor shaped like the inputs",
     lambda: score("infidelity", NET, X, "saliency", perturbation=_noisy, samples=2)),
    ("pointing game without objects", lambda: score("pointing_game", NET, X, "saliency"),
     re.escape("pass boxes= (one (x0, y0, x1, y1)"), lambda: score("pointing_game", NET, X, "saliency", boxes=[(0, 0, 7, 7)] * 2)),
    ("pointing game, a box per image", lambda: score("pointing_game", NET, X, "saliency", boxes=[(0, 0, 7, 7)]),
     "one entry per image", lambda: score("pointing_game", NET, X, "saliency", boxes=[(0, 0, 7, 7), [(1, 1, 4, 4), (8, 8, 9, 9)]])),
    ("pointing game, boxes and masks", lambda: score("pointing_game", NET, X, "saliency", boxes=[(0, 0, 7, 7)] * 2, masks=torch.ones(2, 16, 16, dtype=torch.bool)),
     "boxes= or masks=, not both", lambda: score("pointing_game", NET, X, "saliency", masks=torch.ones(2, 16, 16, dtype=torch.bool))),
    ("pointing game, masks of another size", lambda: score("pointing_game", NET, X, "saliency", masks=torch.ones(2, 8, 8, dtype=torch.bool)),
     re.escape("(B, H, W) = (2, 16, 16)"), lambda: score("pointing_game", NET, X, "saliency", masks=torch.ones(2, 16, 16, dtype=torch.bool))),
    ("pointing game, masks not bool", lambda: score("pointing_game", NET, X, "saliency", masks=torch.ones(2, 16, 16)),
     "must be a bool tensor", lambda: score("pointing_game", NET, X, "saliency", masks=torch.ones(2, 16, 16) > 0)),
    ("scorecard without methods", lambda: scorecard(NET, X, [], metrics=["detail"], progress=False),
     "give at least one method", lambda: scorecard(NET, X, ["saliency"], metrics=["detail"], progress=False)),
    ("scorecard with a cost column as metric", lambda: scorecard(NET, X, ["saliency"], metrics=["passes_per_image"], progress=False),
     "list quality metrics only", lambda: scorecard(NET, X, ["saliency"], metrics=["detail"], progress=False)),
]  # fmt: skip


def _gray() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


@pytest.mark.parametrize(("bad", "phrase", "fixed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_fix_an_error_suggests_works(bad: Callable, phrase: str, fixed: Callable) -> None:
    with pytest.raises(CnnlensError, match=phrase):
        bad()
    result = fixed()
    for r in result if isinstance(result, tuple) else (result,):
        values = getattr(r, "attributions", None)
        values = getattr(r, "values", values)
        if values is not None:
            assert torch.isfinite(values).all()


def test_a_registered_name_is_taken_and_another_works(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlens.attribution import _registry

    monkeypatch.setattr(_registry, "_METHODS", dict(_registry._METHODS))  # the registry is as before afterwards

    class Again(Method):
        name = "saliency"
        category = "gradient"

    with pytest.raises(CnnlensError, match="choose another name"):
        register(Again)
    Again.name = "saliency_again_for_this_test"
    register(Again)
    assert cnnlens.get_method("saliency_again_for_this_test") is Again


def test_a_scorecard_names_its_methods_and_columns() -> None:
    card = scorecard(NET, X, ["saliency"], metrics=["detail"], progress=False)
    with pytest.raises(CnnlensError, match="it has saliency"):
        card.value("occlusion", "detail")
    with pytest.raises(CnnlensError, match="it has detail, passes_per_image"):
        card.value("saliency", "details")
    assert card.value("saliency", "detail") > 0


def test_a_mask_shared_by_channels() -> None:
    mask = torch.zeros(2, 3, 16, 16, dtype=torch.long)
    mask[:, 1, :8] = 1  # differs between channels
    with pytest.raises(CnnlensError, match=re.escape("give it as (H, W) or (B, H, W)")):
        explain(NET, X, "feature_ablation", mask=mask)
    explain(NET, X, "feature_ablation", mask=mask[:, 1])


def test_adaptive_integrated_gradients_reaches_its_tolerance_with_more_passes() -> None:
    with pytest.warns(cnnlens.CnnlensWarning, match="raise max_passes"):
        explain(NET, X, "integrated_gradients", tolerance=1e-6, max_passes=8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = explain(NET, X, "integrated_gradients", tolerance=1e-3, max_passes=4096)
    assert (e.delta.abs() <= 1e-3 * (e.delta - e.attributions.flatten(1).sum(1)).abs()).all()
