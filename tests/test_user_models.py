"""Models users really bring: compiled, half precision, batch statistics, a forward that cuts the gradient,
TorchScript. Each is explained correctly or refused with a cnnlens error that says why and what to do, never a
silently wrong map.

Truth: the same model as a plain float32 ``nn.Module`` (maps equal, or within the rounding of the low-precision
dtype), and the methods' documented behaviour.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import cnnlens
from _nets import inputs, residual_cnn
from _tiny_models import TinyCNN
from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.attribution import methods
from cnnlens.quality import metrics, score, scorecard
from test_contract import _model, _options

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
NAMES = [m.name for m in methods()]


def rel_err(a: T, b: T) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


# ---- torch.compile ------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # dynamo's import
def test_a_compiled_model_is_explained_through_its_original_module() -> None:
    """Rule methods in a row, then a plain one, on ``torch.compile(model)`` and on ``model.compile()``: every map
    equals the eager model's to the last bit, and nothing is compiled (a compiled graph would keep the first rule:
    the third map used to be the second's). In-place ReLUs included (they gave raw dynamo errors)."""
    import torch._dynamo

    net = residual_cnn("inplace")
    x = inputs(2)
    wrapped = torch.compile(net)
    in_place = copy.deepcopy(net)
    in_place.compile()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for model in (wrapped, in_place, cnnlens.Classifier(wrapped)):
        for method, opts in [("guided_backprop", {}), ("deconvnet", {}), ("saliency", {}), ("deeplift", {}),
                             ("grad_cam", {"layer": "b2c2"})]:  # fmt: skip
            ours = cnnlens.explain(model, x, method, **opts).attributions
            assert torch.equal(ours, cnnlens.explain(net, x, method, **opts).attributions), method
        s = score("randomization_check", model, x, "saliency", steps=2)  # re-explains a copy of the module
        assert torch.equal(s.values, score("randomization_check", net, x, "saliency", steps=2).values)
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"]  # it ran eagerly
    assert isinstance(wrapped, torch._dynamo.eval_frame.OptimizedModule) and in_place._compiled_call_impl is not None


# ---- batch statistics ---------------------------------------------------------------------------------------------


class BatchStatsNet(nn.Module):
    def __init__(self, track: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6, track_running_stats=track)
        self.fc = nn.Linear(6, 4)
        if track:
            self.bn.running_mean.uniform_(-0.3, 0.3)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: T) -> T:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_a_batch_statistics_model_is_warned_about() -> None:
    x = inputs(3)
    model = BatchStatsNet(track=False)
    runs = {}
    for size in (2, 8):
        with pytest.warns(CnnlensWarning, match=r"statistics of each batch even in eval mode \(bn:.*batch_size"):
            runs[size] = cnnlens.explain(model, x, "integrated_gradients", steps=8, batch_size=size).attributions
    assert rel_err(runs[2], runs[8]) > 0.05  # what the warning says: the maps depend on batch_size
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        score("sensitivity_max", model, x, "saliency", samples=2)  # re-explains: warned once, not per explanation
    assert sum("statistics of each batch" in str(w.message) for w in seen) == 1
    # the fix it gives: running statistics; then nothing to warn about and no dependence on batch_size
    fixed = BatchStatsNet(track=True)
    fixed.spare = nn.BatchNorm2d(6, track_running_stats=False)  # never runs: nothing depends on it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a2 = cnnlens.explain(fixed, x, "integrated_gradients", steps=8, batch_size=2).attributions
        a8 = cnnlens.explain(fixed, x, "integrated_gradients", steps=8, batch_size=8).attributions
    torch.testing.assert_close(a2, a8)


# ---- a forward that cuts the gradient -----------------------------------------------------------------------------


class Cut(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net, self.kind = _model().eval(), kind

    def forward(self, x: T) -> T:
        if self.kind == "no_grad":
            with torch.no_grad():
                return self.net(x)
        if self.kind == "inference_mode":
            with torch.inference_mode():
                return self.net(x).clone()
        if self.kind == "detach":
            return self.net(x).detach()
        if self.kind == "numpy":
            return self.net(torch.from_numpy(x.numpy()))
        return self.net(x)


CAUSES = {"no_grad": "torch.no_grad()", "inference_mode": "inference_mode", "detach": ".detach()", "numpy": "numpy"}
NEEDS_NO_GRADIENT = {"occlusion", "feature_ablation", "kernel_shap", "score_cam", "eigen_cam"}  # named by the error


@pytest.mark.parametrize("kind", list(CAUSES))
def test_a_forward_that_cuts_the_gradient_gets_a_clear_error(kind: str) -> None:
    """Every method either raises a CnnlensError naming the cause, or (needing no gradient) gives the uncut
    model's map; the methods the error names as the way out are among those that run."""
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    ran = set()
    for name in NAMES:
        try:
            e = cnnlens.explain(Cut(kind), x, name, batch_size=3, seed=7, **_options(name))
        except CnnlensError as err:
            assert "does not depend on" in str(err) and CAUSES[kind] in str(err), (name, str(err))
            assert all(n in str(err) for n in NEEDS_NO_GRADIENT)
            continue
        uncut = cnnlens.explain(Cut("none"), x, name, batch_size=3, seed=7, **_options(name))
        torch.testing.assert_close(e.attributions, uncut.attributions, rtol=0, atol=0)
        ran.add(name)
    assert ran >= NEEDS_NO_GRADIENT
    assert {"saliency", "deeplift"}.isdisjoint(ran)
    assert ("grad_cam" in ran) == (kind == "numpy")  # a cut at the input leaves the layer's gradient intact


# ---- low precision ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_every_method_in_low_precision(name: str, dtype: torch.dtype) -> None:
    """float16 and bfloat16 models: finite maps of the inputs' dtype, within 48 rounding units of the float32 model's
    map, no warning (DeepLIFT used to give all-NaN maps, Eigen-CAM raise a raw error, CAM refuse). Measured: at most
    14 units but for gradient_shap in float16 (40: one of its six random path points moves across a ReLU kink
    when rounded to float16)."""
    base = _model().eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    opts = _options(name)
    low = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in opts.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CnnlensWarning)
        e = cnnlens.explain(copy.deepcopy(base).to(dtype), x.to(dtype), name, batch_size=3, seed=7, **low)
    reference = cnnlens.explain(base, x, name, batch_size=3, seed=7, **opts).attributions
    assert e.attributions.dtype == dtype and torch.isfinite(e.attributions).all()
    assert rel_err(e.attributions, reference) < 48 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cam_on_a_textbook_cam_network_in_low_precision(dtype: torch.dtype) -> None:
    """A network ending in global average pooling and one linear layer: CAM applies (it used to refuse), and equals
    the pooled map weighted by the class's weights, computed here in float32."""
    torch.manual_seed(0)
    net = TinyCNN(num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    low = copy.deepcopy(net).to(dtype)
    e = cnnlens.explain(low, x.to(dtype), "cam", target=1)
    with torch.no_grad():
        acts = low.features(x.to(dtype)).float()
    expected = torch.einsum("k,bkhw->bhw", low.fc.weight[1].float(), acts)[:, None]
    assert rel_err(e.info["layer_maps"][0], expected) < 4 * torch.finfo(dtype).eps


def test_deeplift_on_the_bundled_model_in_float16(lite0) -> None:
    """EfficientNet-Lite0 in float16 (64 px input to stay quick): finite, close to float32 (all NaN before)."""
    from cnnlens.data import sample_image

    x = torch.nn.functional.interpolate(lite0.preprocess([sample_image("chelsea")]), size=64, mode="bilinear")
    half = copy.deepcopy(lite0.module).half()
    e = cnnlens.explain(half, x.half(), "deeplift")
    reference = cnnlens.explain(lite0, x, "deeplift", target=e.target)
    assert torch.isfinite(e.attributions).all()
    assert (
        torch.corrcoef(torch.stack([e.attributions.float().flatten(), reference.attributions.flatten()]))[0, 1] > 0.99
    )


# ---- TorchScript --------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit: the users' TorchScript files still exist
def test_torchscript_gets_na_rows_in_every_metric() -> None:
    """A scorecard with every metric on a TorchScript model: no crash; a method that cannot reach inside
    TorchScript is an n/a row, randomization_check an n/a column, each with a note saying why; every other cell
    equals the nn.Module's."""
    torch.manual_seed(0)
    net = TinyCNN(num_classes=3).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    chosen = {m.name: {"samples": 2} if "samples" in m.params else {} for m in metrics()}
    chosen["pointing_game"] = {"boxes": [(0, 0, 8, 8)] * 2}
    chosen = {k: {**v, "steps": 3} if k in ("deletion", "insertion", "road", "randomization_check") else v
              for k, v in chosen.items()}  # fmt: skip
    chosen["road"]["steps"] = 2
    names = ["saliency", "occlusion", "grad_cam", "guided_backprop", "deeplift"]
    ours = scorecard(scripted, x, names, metrics=chosen, progress=False)
    theirs = scorecard(net, x, names, metrics=chosen, progress=False)
    quality = [c for c in ours.columns if c in chosen]
    for method in names:
        for column in quality:
            if method in ("grad_cam", "guided_backprop", "deeplift") or column == "randomization_check":
                assert ours.per_image[(method, column)] == [pytest.approx(float("nan"), nan_ok=True)] * 2
            elif column != "completeness":  # saliency and occlusion report no delta: n/a on both
                assert ours.value(method, column) == pytest.approx(theirs.value(method, column)), (method, column)
    assert any(n.startswith("randomization_check of saliency:") and "TorchScript" in n for n in ours.notes)
    assert sum(n.startswith(("grad_cam:", "guided_backprop:", "deeplift:")) and "TorchScript" in n for n in ours.notes)
    assert "n/a" in ours.to_markdown()
