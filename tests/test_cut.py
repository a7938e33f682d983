"""The cut: a model split at a layer into head and tail gives the model's own numbers, on every path.

``tail(*head(x)) == model(x)`` on EfficientNet-Lite0 at five layers (one inside a residual block), on the residual
CNN with its ReLUs written every way (modules, in-place, reused, functional, mixed) at every layer, across a skip
connection, with in-place changes around the cut, and on models that do not trace (the hooked path); a replaced
activation gives what a forward hook replacing the layer's output gives; the model is left as it was.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import _nets
import cnnlens
from cnnlens import CnnlensError
from cnnlens.core.model_guard import frozen
from cnnlens.models import cut_at

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
LITE0_LAYERS = ("_conv_stem", "_blocks.2._bn1", "_blocks.5._project_conv", "_blocks.15", "_conv_head")


def replaced(model: nn.Module, layer: str, x: T, activation: T) -> T:
    """The model's output when ``layer`` outputs ``activation`` (a plain forward hook, as Captum does it)."""
    h = model.get_submodule(layer).register_forward_hook(lambda _m, _a, _o: activation.clone())
    try:
        with torch.no_grad():
            return model(x)
    finally:
        h.remove()


def check(model: nn.Module, layer: str, x: T, path: str = "traced", atol: float = 1e-6) -> None:
    """tail(head(x)) = model(x); rows taken by owner; a changed activation = the hooked replacement."""
    with frozen(model), torch.no_grad():
        expected = model(x)
        cut = cut_at(model, layer)
        assert cut.path == path, cut.reason
        a, state = cut.head(x)
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(cut.tail(a, state), expected, rtol=0, atol=atol * scale)
        owner = torch.tensor([x.shape[0] - 1, 0, 0])
        torch.testing.assert_close(cut.tail(a[owner], state.take(owner)), expected[owner], rtol=0, atol=atol * scale)
        changed = a * 0.5 + 0.1
        torch.testing.assert_close(
            cut.tail(changed, state), replaced(model, layer, x, changed), rtol=0, atol=atol * scale
        )
        torch.testing.assert_close(cut.inner(x), a)


@pytest.mark.parametrize("layer", LITE0_LAYERS)
def test_lite0_head_and_tail_are_the_model(lite0, layer) -> None:
    from cnnlens.data import sample_image

    x = lite0.preprocess([sample_image("chelsea"), sample_image("coffee")])
    check(lite0.module, layer, x)
    cut = cut_at(lite0.module, layer)
    kinds = cut.head(x)[1].kinds
    if layer == "_blocks.2._bn1":  # inside a residual block: the block's input crosses the cut, row by row
        assert "rows" in kinds
    assert "const" not in kinds


@pytest.mark.parametrize("kind", _nets.RELU_KINDS)
@pytest.mark.parametrize("layer", ["stem", "bn0", "b1c1", "b1n2", "b2c1", "b2n2", "pool", "head", "gap", "fc"])
def test_every_layer_of_the_residual_cnn_however_its_relus_are_written(kind, layer) -> None:
    model = _nets.residual_cnn(kind)
    check(model, layer, _nets.inputs(3))


class Mutating(nn.Module):
    """Reads a value before and after an in-place change of it, on both sides of the cut."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: T) -> T:
        h = self.c1(x)
        y = self.layer(h)
        before = h * 2  # reads h before it changes: needs no activation, runs in the head
        mixed = y * h  # reads h before it changes and needs the activation: the change must wait for it
        h.relu_()  # changes h after the layer read it
        y.add_(1.0)  # changes the layer's output in place: the tail works on a copy
        return self.fc((y + before + mixed + h).mean((2, 3)))


def test_in_place_changes_keep_their_order_across_the_cut() -> None:
    torch.manual_seed(0)
    check(Mutating().eval(), "layer", torch.randn(2, 3, 6, 6))


class Untraceable(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: T) -> T:
        h = F.relu(self.c1(x))
        if h.sum() > 0:
            h = h * 1.5
        return self.fc(F.relu(self.c2(h) + h).mean((2, 3)))


def test_a_model_that_does_not_trace_takes_the_hooked_path() -> None:
    torch.manual_seed(0)
    model = Untraceable().eval()
    check(model, "c2", torch.randn(2, 3, 6, 6), path="hooked")
    assert "cannot trace" in cut_at(model, "c2").reason


def test_forward_code_with_side_effects_is_not_traced_and_the_model_keeps_its_attributes() -> None:
    class Recording(_nets.ResidualCNN):
        def __init__(self) -> None:
            super().__init__("module")
            self.sizes: list = []
            self.calls = 0

        def forward(self, x: T) -> T:
            self.sizes.append(x.shape[0])
            self.calls += 1
            return super().forward(x)

    model = _nets.init_(Recording())
    cut = cut_at(model, "b2c1")
    assert cut.path == "hooked" and "Recording.sizes" in cut.reason
    assert model.sizes == [] and model.calls == 0  # what tracing appended or counted is undone
    check(model, "b2c1", _nets.inputs(2), path="hooked")


def test_hooks_on_a_traced_module_keep_it_untraced() -> None:
    model = _nets.residual_cnn("module")
    seen = []
    handle = model.register_forward_hook(lambda _m, _a, out: seen.append(out.shape))
    try:
        check(model, "b2c1", _nets.inputs(2), path="hooked")
    finally:
        handle.remove()
    assert seen  # the user's hook ran on every pass
    assert cut_at(model, "b2c1").path == "traced"


def test_a_reused_layer_cannot_be_cut() -> None:
    with pytest.raises(CnnlensError, match="runs 6 times"):
        cut_at(_nets.residual_cnn("reused"), "relu")


def test_the_head_runs_once_per_image() -> None:
    """Counting rows through a head layer and a tail layer: layer IG runs the head on the inputs and the baseline
    once, however many steps; Ablation-CAM once, however many channels."""
    model, x = _nets.residual_cnn("module"), _nets.inputs(3)
    rows = {"stem": 0, "fc": 0}
    handles = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda _m, a, n=n: rows.__setitem__(n, rows[n] + a[0].shape[0])
        )
        for n in rows
    ]
    try:
        for steps in (5, 20, 20):
            rows.update(stem=0, fc=0)
            first = 3 if steps == 5 else 0  # the model's own logits: the cut is checked against them once
            e = cnnlens.explain(model, x, "layer_integrated_gradients", layer="head", steps=steps, target=1)
            # stem: the head on the images and on the baseline; fc: the tail on both and the steps
            assert rows == {"stem": 2 * 3 + first, "fc": 2 * 3 + first + 3 * steps}
            assert e.info["rows"] == {"head": 6, "tail": 6 + 3 * steps} and e.info["cut"]["path"] == "traced"
        rows.update(stem=0, fc=0)
        cnnlens.explain(model, x, "ablation_cam", layer="head", target=1)
        assert rows["stem"] == 3  # the head gives the CAM's activations; the 8 channels: tail only
        with torch.no_grad():
            model.get_submodule("stem").weight.mul_(1.0)  # changed in place: traced and checked again
        rows.update(stem=0, fc=0)
        cnnlens.explain(model, x, "layer_integrated_gradients", layer="head", steps=5, target=1)
        assert rows == {"stem": 3 * 3, "fc": 3 * 3 + 3 * 5}
    finally:
        for h in handles:
            h.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_cut_leaves_the_model_as_it_was() -> None:
    model = _nets.residual_cnn("inplace")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {id(m): dict(vars(m)) for m in model.modules()}
    model.train()
    with frozen(model):
        cut = cut_at(model, "b2c1")
        cut.tail(*cut.head(_nets.inputs(2)))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for m in model.modules():
        now = dict(vars(m))
        now.pop("training")
        was = {k: v for k, v in attrs[id(m)].items() if k != "training"}
        assert now.keys() == was.keys() and all(now[k] is was[k] for k in now)
