"""`module_calls`: which modules run in a forward pass, in what order, with what (kept) outputs; the hooks live only
inside the ``with`` block, also when the forward pass or a hook registration raises, and change nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from cnnlens.core.hooks import Call, module_calls


class Reuse(nn.Module):
    """A ReLU called twice, a block with children, and a layer that never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Tanh())
        self.spare = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        return self.act(self.block(h) - 0.5)


class Fails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom")


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))


def test_calls_come_in_the_order_they_end_or_begin() -> None:
    model = Reuse()
    named = list(model.named_modules())
    with module_calls(named) as calls:
        model(_x())
    assert [c.name for c in calls] == ["conv", "act", "block.0", "block.1", "block", "act", ""]
    assert all(c.module is dict(named)[c.name] and c.output is None for c in calls)  # nothing kept by default
    with module_calls(named, before=True) as calls:
        model(_x())
    assert [c.name for c in calls] == ["", "conv", "act", "block", "block.0", "block.1", "act"]


def test_a_reused_module_gives_one_call_per_run_or_only_its_first() -> None:
    model = Reuse()
    x = _x()
    with module_calls([("act", model.act)], keep=lambda out: out.clone()) as calls:
        y = model(x)
    first = torch.relu(model.conv(x))
    assert [c.name for c in calls] == ["act", "act"]
    torch.testing.assert_close(calls[0].output, first)
    torch.testing.assert_close(calls[1].output, y)
    with module_calls([("act", model.act)], keep=lambda out: out.clone(), first=True) as calls:
        model(x)
    assert len(calls) == 1
    torch.testing.assert_close(calls[0].output, first)


def test_keep_decides_what_is_held_and_a_module_that_does_not_run_gives_no_call() -> None:
    model = Reuse()
    named = [(n, m) for n, m in model.named_modules() if n]
    with module_calls(named, keep=lambda out: tuple(out.shape)) as calls:
        model(_x())
    shapes = {c.name: c.output for c in calls}
    assert shapes["conv"] == (2, 4, 5, 5) and shapes["block"] == (2, 4, 5, 5)
    assert "spare" not in shapes
    with pytest.raises(dataclasses.FrozenInstanceError):
        calls[0].output = None  # type: ignore[misc]
    assert isinstance(calls[0], Call)


def test_the_model_is_untouched() -> None:
    model = Reuse().train()
    x = _x()
    expected = model(x)
    params = [p.detach().clone() for p in model.parameters()]
    with module_calls(list(model.named_modules()), keep=lambda out: out * 0) as calls:
        inside = model(x)
    assert calls and _no_hooks(model)
    torch.testing.assert_close(inside, expected, rtol=0, atol=0)  # a kept value never replaces an output
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))


@pytest.mark.parametrize("before", [False, True])
def test_hooks_are_removed_when_the_forward_pass_raises(before: bool) -> None:
    model = Fails()
    with pytest.raises(RuntimeError, match="boom"), module_calls(list(model.named_modules()), before=before) as calls:
        model(_x())
    assert [c.name for c in calls] == (["", "conv"] if before else ["conv"])
    assert _no_hooks(model)


def test_hooks_are_removed_when_a_registration_fails() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1), torch.jit.script(nn.ReLU()))
    with pytest.raises(RuntimeError, match="ScriptModules"), module_calls(list(model.named_modules())):
        pytest.fail("the block must not run")
    assert _no_hooks(model)
