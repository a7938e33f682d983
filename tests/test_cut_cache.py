"""The cut is traced once per model state: reused while nothing changed, traced again after any change.

A kept cut must never give another model's numbers: after replacing a parameter, a submodule, a flag read by the
traced forward code or after changing weights in place, ``tail(head(x))`` is the changed model's output and the
logits are checked against the model again. The cache never keeps a model alive, and a run that raises leaves the
model bit-identical, without hooks, and the next run right.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import _nets
import cnnlens
from cnnlens.core.model_guard import frozen
from cnnlens.models import cut_at

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor


class Scaled(nn.Module):
    """A residual CNN whose root forward reads a parameter and a flag (both baked into a traced graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _nets.residual_cnn("module")
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.skip = True

    def forward(self, x: T) -> T:
        y = self.net(x) * self.scale
        return y + 1.0 if self.skip else y


def through_cut(model: nn.Module, layer: str, x: T) -> tuple[T, T]:
    """``(tail(head(x)), model(x))``."""
    with frozen(model), torch.no_grad():
        cut = cut_at(model, layer)
        assert cut.path == "traced", cut.reason
        return cut.tail(*cut.head(x)), model(x)


def test_a_kept_cut_follows_every_change_of_the_model() -> None:
    model, x = Scaled(), _nets.inputs(2)
    first = cut_at(model, "net.b2c1")
    assert cut_at(model, "net.b2c1")._traced is first._traced  # unchanged: traced once
    changes = [
        (lambda: model.net.b2c2.weight.mul_(1.5), True),  # in place (its version counter moves)
        (lambda: model.scale.mul_(-1.0), True),  # in place, a parameter the root's traced code reads
        (lambda: model.net.b1c1.weight.data.mul_(0.5), False),  # behind autograd's back: the cut reads it live
        (lambda: setattr(model, "scale", nn.Parameter(torch.tensor(-3.0))), True),  # a new parameter object
        (lambda: setattr(model.net, "fc", nn.Linear(8, 5)), True),  # a new submodule
        (lambda: setattr(model, "skip", False), True),  # a flag the traced code reads
    ]
    for change, retraced in changes:
        kept = cut_at(model, "net.b2c1")._traced
        with torch.no_grad():
            change()
        got, expected = through_cut(model, "net.b2c1", x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert (cut_at(model, "net.b2c1")._traced is not kept) == retraced


def test_the_logits_check_runs_again_after_a_change() -> None:
    model, x = _nets.residual_cnn("module"), _nets.inputs(3)
    e = cnnlens.explain(model, x, "layer_integrated_gradients", layer="b2c1", steps=4)
    cut = cut_at(model, "b2c1")
    assert cut.checked("logits", x) and not cut.checked("logits", _nets.inputs(3, h=16, w=16))
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    assert not cut_at(model, "b2c1").checked("logits", x)
    again = cnnlens.explain(model, x, "layer_integrated_gradients", layer="b2c1", steps=4)
    torch.testing.assert_close(again.attributions, e.attributions)  # a bias shift moves no gradient
    assert cut_at(model, "b2c1").checked("logits", x)


def test_the_cache_never_keeps_a_model_alive() -> None:
    model = _nets.residual_cnn("module")
    cnnlens.explain(model, _nets.inputs(2), "ablation_cam", layer="head")
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_run_that_raises_leaves_the_model_as_it_was_and_the_next_run_right() -> None:
    model, x = _nets.residual_cnn("inplace"), _nets.inputs(3)
    fresh = _nets.residual_cnn("inplace")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cnnlens.explain(model, x, "layer_conductance", layer="b2c1", points=3, steps=8)  # cached and checked
    for bad in ({"target": 99}, {"baseline": torch.zeros(2, 3, 8, 8)}):
        with pytest.raises(cnnlens.CnnlensError):
            cnnlens.explain(model, x, "layer_conductance", layer="b2c1", points=3, steps=8, **bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    ours = cnnlens.explain(model, x, "layer_conductance", layer="b2c1", points=3, steps=8)
    reference = cnnlens.explain(fresh, x, "layer_conductance", layer="b2c1", points=3, steps=8)
    torch.testing.assert_close(ours.attributions, reference.attributions, rtol=0, atol=0)
